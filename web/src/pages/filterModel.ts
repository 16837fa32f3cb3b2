// The Index explorer's filter, as pure functions: the sidebar's choices compiled to the index's
// text syntax (docs/index.md), combined with what the user typed, and the facet requests that
// give each key its counts. Everything the explorer sends is one `where` string, so a query,
// its facets, a dataset link and a saved preset all mean exactly the same filter.

import type { SchemaDoc } from "./schemaOps";

export type KeyKind = "boolean" | "datetime" | "number" | "uuid" | "varchar" | "text" | "enum";
const INDEXED: ReadonlySet<string> = new Set(["boolean", "datetime", "number", "uuid", "varchar", "text", "enum"]);

export interface FilterKey {
  name: string; // a metadata key, or "@type" / "@size" ... for an item field
  kind: KeyKind;
  options?: string[]; // an enum's options
}

/** The schema's live, queryable keys, by name. */
export function filterKeys(schema: SchemaDoc | null): FilterKey[] {
  if (!schema) return [];
  return Object.entries(schema.keys)
    .filter(([, def]) => !def.deleted && INDEXED.has(def.type))
    .map(([name, def]) => ({ name, kind: def.type as KeyKind, ...(def.type === "enum" ? { options: def.values ?? [] } : {}) }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

export const SORT_FIELDS = ["title", "type", "size", "width", "height", "duration", "frames", "created_at"];

/** How a key is filtered in the sidebar: value checkboxes, a range, or a text match. */
export function control(kind: KeyKind): "values" | "range" | "match" {
  if (kind === "number" || kind === "datetime") return "range";
  if (kind === "text") return "match";
  return "values";
}

/** Which keys have counts from POST /api/v1/index/facets (text keys are refused there). */
export function facetable(k: FilterKey): boolean {
  return k.kind !== "text";
}

export interface Range {
  min: string;
  max: string;
}

export type Value = string | boolean;

export interface Selection {
  values: Record<string, Value[]>; // metadata keys and "@type"
  ranges: Record<string, Range>; // metadata keys, "@size", "@created_at"
  match: Record<string, string>; // text keys
  folder: string; // "@folder under"
}

export function emptySelection(): Selection {
  return { values: {}, ranges: {}, match: {}, folder: "" };
}

export function isEmpty(sel: Selection): boolean {
  return clauses(sel, {}).length === 0;
}

/** A key or field as the syntax names it: `@field`, or the key in backticks (any schema key). */
export function target(name: string): string {
  return name.startsWith("@") ? name : `\`${name}\``;
}

/** A value as text: quoted, with \ and " escaped (a quoted value is always text). */
export function quote(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

const NUMBER = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

/** One end of a range, as the syntax reads it for the key's kind; null when it is not one. */
export function bound(kind: KeyKind, raw: string): string | null {
  const v = raw.trim();
  if (v === "") return null;
  if (kind === "datetime") return quote(v);
  return NUMBER.test(v) ? v : null;
}

function literal(kind: KeyKind, v: Value): string {
  if (typeof v === "boolean" || kind === "boolean") return String(v);
  if (kind === "number") return NUMBER.test(String(v)) ? String(v) : quote(String(v));
  return quote(String(v));
}

function kindOf(name: string, kinds: Record<string, KeyKind>): KeyKind {
  if (name === "@size") return "number";
  if (name === "@created_at") return "datetime";
  if (name.startsWith("@")) return "varchar";
  return kinds[name] ?? "varchar";
}

/** The sidebar's choices as `and`-ed clauses, in a stable order, optionally leaving one key out. */
export function clauses(sel: Selection, kinds: Record<string, KeyKind>, without?: string): string[] {
  const out: string[] = [];
  const names = [...new Set([...Object.keys(sel.values), ...Object.keys(sel.ranges), ...Object.keys(sel.match)])].sort();
  for (const name of names) {
    if (name === without) continue;
    const kind = kindOf(name, kinds);
    const values = sel.values[name] ?? [];
    if (name === "@collection" && values.length > 0) out.push(`@collection in (${values.map((v) => quote(String(v))).join(", ")})`);
    else if (values.length === 1) out.push(`${target(name)} = ${literal(kind, values[0])}`);
    else if (values.length > 1) out.push(`${target(name)} in (${values.map((v) => literal(kind, v)).join(", ")})`);
    const range = sel.ranges[name];
    if (range) {
      const lo = bound(kind, range.min);
      const hi = bound(kind, range.max);
      if (lo !== null) out.push(`${target(name)} >= ${lo}`);
      if (hi !== null) out.push(`${target(name)} <= ${hi}`);
    }
    const words = (sel.match[name] ?? "").trim();
    if (words) out.push(`${target(name)} match ${quote(words)}`);
  }
  if (sel.folder.trim() && without !== "@folder") out.push(`@folder under ${quote(sel.folder.trim())}`);
  return out;
}

export function sidebarText(sel: Selection, kinds: Record<string, KeyKind>, without?: string): string {
  return clauses(sel, kinds, without).join(" and ");
}

export interface Composed {
  where: string; // "" for every item
  offset: number; // where the user's text starts in `where`, minus one (0 when it is alone)
}

/** What the user typed, and-ed with the sidebar's clauses (the typed text in parentheses, first). */
export function compose(typed: string, sidebar: string): Composed {
  const t = typed.trim();
  if (!t) return { where: sidebar, offset: 0 };
  if (!sidebar) return { where: t, offset: 0 };
  return { where: `(${t}) and ${sidebar}`, offset: 1 };
}

/** An error message about the composed filter, with its position moved back onto the typed text. */
export function typedPosition(message: string, offset: number): string {
  if (offset === 0) return message;
  return message.replace(/\bat position (\d+)/, (_, n: string) => `at position ${Math.max(1, Number(n) - offset)}`);
}

export interface FacetRequest {
  where: string;
  keys: string[];
}

const MAX_FACETS = 20;

/** The facet requests for the sidebar: a key with a selection counts under every *other* choice
 * (so its other values stay selectable); the rest share requests under the whole filter. */
export function facetPlan(keys: FilterKey[], sel: Selection, typed: string): FacetRequest[] {
  const kinds = Object.fromEntries(keys.map((k) => [k.name, k.kind]));
  const names = ["@type", ...keys.filter(facetable).map((k) => k.name)]; // collections have no facet counts
  const chosen = (n: string) => (sel.values[n]?.length ?? 0) > 0 || (sel.ranges[n] !== undefined && (sel.ranges[n].min.trim() !== "" || sel.ranges[n].max.trim() !== ""));
  const out: FacetRequest[] = [];
  const shared = names.filter((n) => !chosen(n));
  const whole = compose(typed, sidebarText(sel, kinds)).where;
  for (let i = 0; i < shared.length; i += MAX_FACETS) out.push({ where: whole, keys: shared.slice(i, i + MAX_FACETS) });
  for (const n of names.filter(chosen)) out.push({ where: compose(typed, sidebarText(sel, kinds, n)).where, keys: [n] });
  return out;
}

/** Toggle one value of a key in the selection (a new selection; the old one is untouched). */
export function toggle(sel: Selection, name: string, value: Value): Selection {
  const now = sel.values[name] ?? [];
  const next = now.includes(value) ? now.filter((v) => v !== value) : [...now, value];
  const values = { ...sel.values };
  if (next.length) values[name] = next;
  else delete values[name];
  return { ...sel, values };
}

export function setRange(sel: Selection, name: string, range: Range): Selection {
  const ranges = { ...sel.ranges };
  if (range.min.trim() || range.max.trim()) ranges[name] = range;
  else delete ranges[name];
  return { ...sel, ranges };
}

export function setMatch(sel: Selection, name: string, words: string): Selection {
  const match = { ...sel.match };
  if (words.trim()) match[name] = words;
  else delete match[name];
  return { ...sel, match };
}

/** The sort as the API takes it: "" (creation order), "key" or "@field", "-" first for descending. */
export function sortParam(by: string, desc: boolean): string | undefined {
  if (!by) return undefined;
  return desc ? `-${by}` : by;
}

/** Every sort choice: the schema's keys, then the item fields. */
export function sortChoices(keys: FilterKey[]): { value: string; label: string }[] {
  return [
    ...keys.map((k) => ({ value: k.name, label: k.name })),
    ...SORT_FIELDS.map((f) => ({ value: `@${f}`, label: `@${f}` })),
  ];
}

export interface FacetValue {
  value: Value | number;
  count: number;
}

export interface Bucket {
  from: string | number;
  to: string | number;
  count: number;
}

export interface Facet {
  key: string;
  kind: string;
  values?: FacetValue[];
  buckets?: Bucket[];
  count?: number;
}

/** The values to show as checkboxes: the counted ones, then chosen or enum options without a
 * count (0 under the current filter), so a choice never disappears from the list. */
export function valueRows(facet: Facet | undefined, chosen: Value[], options: string[] = []): FacetValue[] {
  const counted = (facet?.values ?? []).map((v) => ({ value: v.value, count: v.count }));
  const seen = new Set(counted.map((v) => String(v.value)));
  const extra = [...chosen, ...options].filter((v) => {
    const k = String(v);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return [...counted, ...extra.map((v) => ({ value: v, count: 0 }))];
}

/** The query text that applies a saved preset: by name when it names one preset, else by id. */
export function presetQuery(preset: { id: string; name: string }, all: { name: string }[]): string {
  const unique = all.filter((p) => p.name === preset.name).length === 1;
  return `preset ${quote(unique ? preset.name : preset.id)}`;
}

/** The sidebar's choices as the page's address keeps them (`?f=`): JSON, or null for none. */
export function selectionParam(sel: Selection): string | null {
  return isEmpty(sel) ? null : JSON.stringify(sel);
}

/** The choices an address holds; anything that is not a selection (an edited or old link)
 * reads as no choice rather than breaking the page. */
export function parseSelection(raw: string | null): Selection {
  const out = emptySelection();
  if (!raw) return out;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return out;
  }
  if (!v || typeof v !== "object") return out;
  const o = v as Record<string, unknown>;
  const record = (x: unknown): Record<string, unknown> => (x && typeof x === "object" && !Array.isArray(x) ? (x as Record<string, unknown>) : {});
  for (const [k, list] of Object.entries(record(o.values))) {
    const vals = Array.isArray(list) ? list.filter((x): x is Value => typeof x === "string" || typeof x === "boolean") : [];
    if (vals.length) out.values[k] = vals;
  }
  for (const [k, r] of Object.entries(record(o.ranges))) {
    const rr = record(r);
    const min = typeof rr.min === "string" ? rr.min : "";
    const max = typeof rr.max === "string" ? rr.max : "";
    if (min.trim() || max.trim()) out.ranges[k] = { min, max };
  }
  for (const [k, words] of Object.entries(record(o.match))) if (typeof words === "string" && words.trim()) out.match[k] = words;
  if (typeof o.folder === "string") out.folder = o.folder;
  return out;
}
