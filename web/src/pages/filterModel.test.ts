import { describe as suite, expect, it } from "vitest";
import {
  bound, clauses, compose, emptySelection, facetPlan, filterKeys, parseSelection, quote, selectionParam, setMatch, setRange, sidebarText, presetQuery, sortChoices, sortParam, target, toggle, typedPosition, valueRows,
  type FilterKey, type KeyKind,
} from "./filterModel";
import type { SchemaDoc } from "./schemaOps";

const schema: SchemaDoc = {
  strict_metadata: false,
  keys: {
    weather: { type: "enum", values: ["rain", "snow", "sun"] },
    score: { type: "number" },
    "site name": { type: "varchar" },
    notes: { type: "text" },
    flag: { type: "boolean" },
    taken: { type: "datetime" },
    vec: { type: "embedding", size: 4 },
    old: { type: "varchar", deleted: "soft" },
  },
};
const keys: FilterKey[] = filterKeys(schema);
const kinds: Record<string, KeyKind> = Object.fromEntries(keys.map((k) => [k.name, k.kind]));

suite("the sidebar's keys", () => {
  it("are the schema's live queryable keys, with an enum's options", () => {
    expect(keys.map((k) => k.name)).toEqual(["flag", "notes", "score", "site name", "taken", "weather"]);
    expect(keys.find((k) => k.name === "weather")?.options).toEqual(["rain", "snow", "sun"]);
  });
  it("sort by any key or item field", () => {
    const values = sortChoices(keys).map((c) => c.value);
    expect(values).toContain("notes");
    expect(values).toContain("@size");
    expect(sortParam("score", true)).toBe("-score");
    expect(sortParam("@title", false)).toBe("@title");
    expect(sortParam("", true)).toBeUndefined();
  });
});

suite("compiling the sidebar to the text syntax", () => {
  it("quotes keys in backticks and text values with escapes", () => {
    expect(target("site name")).toBe("`site name`");
    expect(target("@type")).toBe("@type");
    expect(quote('say "hi" \\o/')).toBe('"say \\"hi\\" \\\\o/"');
  });
  it("is empty with nothing chosen", () => {
    expect(sidebarText(emptySelection(), kinds)).toBe("");
  });
  it("writes one value as =, several as in, booleans and numbers bare", () => {
    let sel = toggle(emptySelection(), "weather", "rain");
    expect(sidebarText(sel, kinds)).toBe('`weather` = "rain"');
    sel = toggle(sel, "weather", "snow");
    sel = toggle(sel, "flag", true);
    expect(sidebarText(sel, kinds)).toBe('`flag` = true and `weather` in ("rain", "snow")');
    sel = toggle(sel, "weather", "rain");
    expect(clauses(sel, kinds)).toEqual(["`flag` = true", '`weather` = "snow"']);
    sel = toggle(toggle(sel, "weather", "snow"), "flag", true);
    expect(sel.values).toEqual({});
  });
  it("writes ranges with the ends that are set, numbers bare and datetimes quoted", () => {
    let sel = setRange(emptySelection(), "score", { min: "0.5", max: "" });
    sel = setRange(sel, "taken", { min: "2024-05-01", max: "2024-06-01T00:00:00+00:00" });
    sel = setRange(sel, "@size", { min: "", max: "1e6" });
    expect(sidebarText(sel, kinds)).toBe('@size <= 1e6 and `score` >= 0.5 and `taken` >= "2024-05-01" and `taken` <= "2024-06-01T00:00:00+00:00"');
    expect(setRange(sel, "score", { min: " ", max: "" }).ranges.score).toBeUndefined();
  });
  it("leaves out a number bound that is not a number, rather than sending text", () => {
    expect(bound("number", "high")).toBeNull();
    expect(bound("number", "-3.5")).toBe("-3.5");
    expect(sidebarText(setRange(emptySelection(), "score", { min: "high", max: "" }), kinds)).toBe("");
  });
  it("matches text keys and folders", () => {
    let sel = setMatch(emptySelection(), "notes", " red fox ");
    sel = { ...sel, folder: "data/2024" };
    expect(sidebarText(sel, kinds)).toBe('`notes` match "red fox" and @folder under "data/2024"');
    expect(setMatch(sel, "notes", "").match).toEqual({});
  });
  it("names collections by id, always with in (the only operator of @collection)", () => {
    expect(sidebarText(toggle(emptySelection(), "@collection", "c1"), kinds)).toBe('@collection in ("c1")');
    expect(sidebarText(toggle(toggle(emptySelection(), "@collection", "c1"), "@collection", "c2"), kinds)).toBe('@collection in ("c1", "c2")');
  });
  it("applies a preset by its name, or by id when the name is not unique", () => {
    const a = { id: "0190-a", name: "rainy" };
    expect(presetQuery(a, [a, { name: "sunny" }])).toBe('preset "rainy"');
    expect(presetQuery(a, [a, { name: "rainy" }])).toBe('preset "0190-a"');
  });
  it("can leave one key out, for that key's own counts", () => {
    const sel = toggle(toggle(emptySelection(), "weather", "rain"), "@type", "image");
    expect(sidebarText(sel, kinds, "weather")).toBe('@type = "image"');
  });
});

suite("the typed text and the sidebar", () => {
  it("are and-ed, the typed text first in parentheses", () => {
    expect(compose("", "")).toEqual({ where: "", offset: 0 });
    expect(compose(" a = 1 ", "")).toEqual({ where: "a = 1", offset: 0 });
    expect(compose("", "`b` = 2")).toEqual({ where: "`b` = 2", offset: 0 });
    expect(compose("a = 1 or c = 2", "`b` = 2")).toEqual({ where: "(a = 1 or c = 2) and `b` = 2", offset: 1 });
  });
  it("an error's position is moved back onto the typed text", () => {
    const msg = "at position 10: expected a number for 'score', found 'high'";
    expect(typedPosition(msg, 0)).toBe(msg);
    expect(typedPosition(msg, 1)).toBe("at position 9: expected a number for 'score', found 'high'");
    expect(typedPosition(`invalid filter: ${msg}`, 1)).toBe("invalid filter: at position 9: expected a number for 'score', found 'high'");
    expect(typedPosition("unknown key 'x'", 1)).toBe("unknown key 'x'");
  });
});

suite("facet requests", () => {
  it("share one request while nothing is chosen, and never ask for text keys", () => {
    const plan = facetPlan(keys, emptySelection(), "");
    expect(plan).toEqual([{ where: "", keys: ["@type", "flag", "score", "site name", "taken", "weather"] }]);
  });
  it("count a chosen key under every other choice, so its other values stay selectable", () => {
    let sel = toggle(emptySelection(), "weather", "rain");
    sel = setRange(sel, "score", { min: "1", max: "" });
    const plan = facetPlan(keys, sel, "flag = true");
    expect(plan).toEqual([
      { where: '(flag = true) and `score` >= 1 and `weather` = "rain"', keys: ["@type", "flag", "site name", "taken"] },
      { where: '(flag = true) and `weather` = "rain"', keys: ["score"] },
      { where: "(flag = true) and `score` >= 1", keys: ["weather"] },
    ]);
  });
  it("split more than 20 keys over requests", () => {
    const many: FilterKey[] = Array.from({ length: 45 }, (_, i) => ({ name: `k${String(i).padStart(2, "0")}`, kind: "varchar" }));
    const plan = facetPlan(many, emptySelection(), "");
    expect(plan.map((r) => r.keys.length)).toEqual([20, 20, 6]);
  });
  it("keep chosen values and enum options in the list, at 0", () => {
    const rows = valueRows({ key: "weather", kind: "enum", values: [{ value: "sun", count: 3 }] }, ["rain"], ["rain", "snow", "sun"]);
    expect(rows).toEqual([{ value: "sun", count: 3 }, { value: "rain", count: 0 }, { value: "snow", count: 0 }]);
  });
});

suite("the selection in the address", () => {
  it("round-trips, and no choice is no parameter", () => {
    let sel = toggle(emptySelection(), "weather", "rain");
    sel = setRange(sel, "score", { min: "1", max: "" });
    sel = setMatch(sel, "notes", "red fox");
    sel = { ...sel, folder: "data/2024" };
    expect(parseSelection(selectionParam(sel))).toEqual(sel);
    expect(selectionParam(emptySelection())).toBeNull();
    expect(parseSelection(null)).toEqual(emptySelection());
  });

  it("reads anything else as no choice", () => {
    for (const raw of ["{", "null", "[1]", '"x"', '{"values":{"k":[1,{}]},"ranges":{"s":5},"match":{"t":3},"folder":7}'])
      expect(parseSelection(raw)).toEqual(emptySelection());
    expect(parseSelection('{"values":{"flag":[true,"x",2]}}').values).toEqual({ flag: [true, "x"] });
  });
});
