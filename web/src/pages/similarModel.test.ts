import { describe as suite, expect, it } from "vitest";
import { describeSource, embeddingKeys, fileBase64, pickKey, showScore, similarBody, vectorKeys } from "./similarModel";
import type { SchemaDoc } from "./schemaOps";

const schema: SchemaDoc = {
  strict_metadata: false,
  keys: {
    clip: { type: "embedding", size: 512, api: { url: "https://e.example", embed_text: true, embed_b64_image: true } },
    audio: { type: "embedding", size: 128, metric: "l2" },
    old: { type: "embedding", size: 8, deleted: "soft" },
    camera: { type: "varchar" },
  },
};

suite("similar search", () => {
  it("lists live embedding keys with what their endpoints take", () => {
    expect(embeddingKeys(schema)).toEqual([
      { name: "audio", size: 128, metric: "l2", text: false, image: false },
      { name: "clip", size: 512, metric: "cosine", text: true, image: true },
    ]);
    expect(embeddingKeys(null)).toEqual([]);
  });

  it("picks a key that can serve the source", () => {
    const keys = embeddingKeys(schema);
    expect(pickKey(keys, null, { item: "i" })).toBe("audio");
    expect(pickKey(keys, "clip", { item: "i" })).toBe("clip");
    expect(pickKey(keys, "audio", { text: "a dog" })).toBe("clip"); // audio has no endpoint
    expect(pickKey(keys, "gone", null)).toBe("audio");
    expect(pickKey(keys, null, { item: "i", keys: ["clip"] })).toBe("clip"); // the item has no audio vector
    expect(pickKey(keys.filter((k) => k.name === "audio"), null, { text: "x" })).toBeNull();
  });

  it("builds the body with the explorer's filter", () => {
    expect(similarBody({ item: "abc" }, "clip", 20, 'camera = "c1"')).toEqual({ key: "clip", k: 20, where: 'camera = "c1"', item: "abc", fields: ["id", "title", "type", "size", "folder_id"] });
    const text = similarBody({ text: "a red car" }, "clip", 5, "  ");
    expect(text.text).toBe("a red car");
    expect(text.where).toBeUndefined();
    expect(similarBody({ image: "AAA=", name: "q.png" }, "clip", 5, "").image).toBe("AAA=");
  });

  it("shows scores per metric and describes the source", () => {
    expect(showScore("cosine", 0.87654)).toBe("0.877");
    expect(showScore("l2", -1.5)).toBe("distance 1.50");
    expect(describeSource({ item: "x", title: "cat.jpg" })).toBe("Like “cat.jpg”");
    expect(describeSource({ text: "a".repeat(80) })).toBe(`Near “${"a".repeat(57)}…”`);
  });

  it("finds the keys an item holds vectors for", () => {
    expect(vectorKeys({ clip: { $vector: { dim: 4 } }, camera: "c1", gone: { $vector: { dim: 4, missing: true } }, n: null })).toEqual(["clip"]);
  });

  it("encodes a file as base64", async () => {
    expect(await fileBase64(new Blob([new Uint8Array([0, 255, 10])]))).toBe("AP8K");
  });
});
