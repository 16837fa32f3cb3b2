import { describe, expect, it } from "vitest";
import { bitmaskPath, boxCorners, colourFor, decodeRle, drawObject, frameLabels, labelledFrames, orderedPoints, rotatedCorners } from "./labelGeometry";

const close = (a: { x: number; y: number }[], b: [number, number][]) => {
  expect(a.length).toBe(b.length);
  a.forEach((p, i) => {
    expect(p.x).toBeCloseTo(b[i][0], 6);
    expect(p.y).toBeCloseTo(b[i][1], 6);
  });
};

describe("boxes", () => {
  it("scales a normalised box to pixels", () => {
    close(boxCorners({ x: 0.1, y: 0.2, w: 0.5, h: 0.25 }, 640, 480), [[64, 96], [384, 96], [384, 216], [64, 216]]);
  });

  it("turns a rotatable box clockwise about its centre, in pixels", () => {
    // 0.25 x 0.5 of 800 x 400 = a 200 x 200 square centred on (400, 200)
    const r = rotatedCorners({ x: 0.375, y: 0.25, w: 0.25, h: 0.5, theta: 90 }, 800, 400);
    close(r, [[500, 100], [500, 300], [300, 300], [300, 100]]);
    const r45 = rotatedCorners({ x: 0.375, y: 0.25, w: 0.25, h: 0.5, theta: 45 }, 800, 400);
    const d = 100 * Math.SQRT2;
    close(r45, [[400, 200 - d], [400 + d, 200], [400, 200 + d], [400 - d, 200]]);
    const sides = [0, 1, 2, 3].map((i) => Math.hypot(r45[i].x - r45[(i + 1) % 4].x, r45[i].y - r45[(i + 1) % 4].y));
    sides.forEach((s) => expect(s).toBeCloseTo(200, 6));
  });

  it("keeps an unrotated box where a bounding box would be", () => {
    close(rotatedCorners({ x: 0.1, y: 0.2, w: 0.5, h: 0.25, theta: 0 }, 640, 480), [[64, 96], [384, 96], [384, 216], [64, 216]]);
  });
});

describe("polygons, polylines and points", () => {
  it("orders a point map by index, not by key text", () => {
    const m: Record<string, { x: number; y: number }> = {};
    for (let i = 11; i >= 0; i -= 1) m[String(i)] = { x: i / 11, y: 0 };
    expect(orderedPoints(m).map((p) => p.x)).toEqual([...Array(12).keys()].map((i) => i / 11));
  });

  it("converts a polygon (map or flat polygons) to pixels", () => {
    const poly = drawObject({ shape: "polygon", polygon: { "0": { x: 0, y: 0 }, "1": { x: 1, y: 0 }, "2": { x: 0.5, y: 1 } } }, 200, 100);
    expect(poly?.kind).toBe("polygon");
    close((poly as { points: { x: number; y: number }[] }).points, [[0, 0], [200, 0], [100, 100]]);
    const flat = drawObject({ shape: "polygon", polygons: [[[0.5, 0.5, 1, 0.5, 1, 1]]] }, 200, 100);
    close((flat as { points: { x: number; y: number }[] }).points, [[100, 50], [200, 50], [200, 100]]);
  });

  it("draws polylines and points, and nothing for a shape without geometry", () => {
    const line = drawObject({ shape: "polyline", polyline: [{ x: 0, y: 0 }, { x: 0.5, y: 0.5 }] }, 10, 20);
    close((line as { points: { x: number; y: number }[] }).points, [[0, 0], [5, 10]]);
    expect(drawObject({ shape: "point", point: { "0": { x: 0.25, y: 0.75 } } }, 100, 100)).toEqual({ kind: "point", at: { x: 25, y: 75 } });
    expect(drawObject({ shape: "bounding_box" }, 10, 10)).toBeNull();
    expect(drawObject({ shape: "cuboid" }, 10, 10)).toBeNull();
  });
});

describe("bitmasks", () => {
  it("decodes the SDK's RLE strings", () => {
    // the SDK serialises [2, 3, 4] as "234" and [0, 16] as "0`0" (SDK output)
    expect(decodeRle("234")).toEqual([2, 3, 4]);
    expect(decodeRle("0`0")).toEqual([0, 16]);
  });

  it("draws the runs of 1s row by row, placed at top/left", () => {
    // 3x2 mask, row-major: 0 1 1 / 1 0 0  -> runs [1, 3, 2]
    const m = bitmaskPath({ top: 10, left: 20, width: 3, height: 2, rleString: "132" });
    expect(m.cells).toBe(2);
    expect(m.path).toBe("M21 10h2v1h-2zM20 11h1v1h-1z");
  });
});

describe("frames", () => {
  it("reads an image's labels and a video's frame", () => {
    const image = { objects: [{ shape: "point" }], classifications: [] };
    expect(frameLabels(image, 7).objects).toHaveLength(1);
    const video = { "0": { objects: [{ shape: "point" }] }, "12": { objects: [], classifications: [{}] } };
    expect(frameLabels(video, 0).objects).toHaveLength(1);
    expect(frameLabels(video, 12).classifications).toHaveLength(1);
    expect(frameLabels(video, 3)).toEqual({ objects: [], classifications: [] });
    expect(labelledFrames(video)).toEqual([0, 12]);
  });
});

describe("colours", () => {
  it("prefers the ontology's colour, then the place in the ontology", () => {
    expect(colourFor("x", "#123456", 3)).toBe("#123456");
    const first = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => colourFor("same", undefined, i));
    expect(new Set(first).size).toBe(10);
    expect(colourFor("abc")).toBe(colourFor("abc"));
  });
});
