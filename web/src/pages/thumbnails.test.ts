import { describe, expect, it } from "vitest";
import { thumbnailSource } from "./thumbnails";

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
