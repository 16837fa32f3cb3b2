import { describe, expect, it } from "vitest";
import { SignBatcher, thumbnailSource } from "./thumbnails";

const item = (over: Partial<{ id: string; type: string; integration_id: string | null; signed_url: string | null }>) => ({
  id: "i1", type: "image", integration_id: "normal", signed_url: "https://store/x.png?sig=1", ...over,
});

describe("thumbnailSource", () => {
  it("uses corral's thumbnail, falling back to the original", () => {
    expect(thumbnailSource(item({}), new Set(["strict"]))).toEqual({ src: "/api/v1/items/i1/thumbnail", fallback: "https://store/x.png?sig=1" });
  });

  it("loads a strict client-only integration's originals through signed URLs only", () => {
    expect(thumbnailSource(item({ integration_id: "strict" }), new Set(["strict"]))).toEqual({ src: "https://store/x.png?sig=1", fallback: null });
    expect(thumbnailSource(item({ integration_id: "strict", signed_url: null }), new Set(["strict"]))).toBeNull();
  });

  it("has no picture for other types", () => {
    expect(thumbnailSource(item({ type: "video" }), new Set())).toBeNull();
  });
});

describe("SignBatcher", () => {
  it("asks for the tiles that fail together in one request, and answers each", async () => {
    const calls: string[][] = [];
    const batcher = new SignBatcher(async (ids) => { calls.push(ids); return ids.filter((id) => id !== "b").map((id) => ({ id, signed_url: `https://store/${id}` })); }, 1);
    const got = await Promise.all([batcher.url("a"), batcher.url("b"), batcher.url("a")]);
    expect(got).toEqual(["https://store/a", null, "https://store/a"]);
    expect(calls).toEqual([["a", "b"]]);
  });

  it("answers null when signing fails", async () => {
    const batcher = new SignBatcher(async () => { throw new Error("403"); }, 1);
    expect(await batcher.url("a")).toBeNull();
  });
});
