import { describe as suite, expect, it } from "vitest";
import { addEnumOptions, defFromForm, hardDelete, restore, retype, softDelete, type SchemaDoc } from "./schemaOps";

const doc: SchemaDoc = { strict_metadata: false, keys: { camera: { type: "varchar", required: true }, weather: { type: "enum", values: ["rain"] } } };

suite("schema edits", () => {
  it("soft-deletes and restores without losing the definition", () => {
    const gone = softDelete(doc, "camera");
    expect(gone.keys.camera).toEqual({ type: "varchar", required: true, deleted: "soft" });
    expect(restore(gone, "camera").keys.camera).toEqual({ type: "varchar", required: true });
    expect(doc.keys.camera.deleted).toBeUndefined(); // the original is untouched
  });

  it("hard-deletes by marking the tombstone", () => {
    expect(hardDelete(doc, "weather").keys.weather.deleted).toBe("hard");
  });

  it("adds enum options without duplicates, sorted", () => {
    expect(addEnumOptions(doc, "weather", ["snow", " rain ", ""]).keys.weather.values).toEqual(["rain", "snow"]);
  });

  it("retypes and keeps required", () => {
    expect(retype(doc, "camera", { type: "text" }).keys.camera).toEqual({ type: "text", required: true });
  });

  it("builds only the attributes of the type", () => {
    expect(defFromForm("embedding", { size: "4", values: "a,b" })).toEqual({ type: "embedding", size: 4 });
    expect(defFromForm("enum", { values: "a, b,,c" })).toEqual({ type: "enum", values: ["a", "b", "c"] });
  });
});
