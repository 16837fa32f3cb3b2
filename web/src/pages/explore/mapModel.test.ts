import { describe, expect, it } from "vitest";
import { decodePoints, fitView, inside, lassoClause, selectMask, simplify, toGrid, toScreen, typedWithArea, withArea, zoomAt, type Vertex } from "./mapModel";

function doc(xs: number[], ys: number[], codes: number[], header: object): ArrayBuffer {
  const meta = new TextEncoder().encode(JSON.stringify(header));
  const n = xs.length;
  const at = 16 + meta.length + ((4 - (meta.length % 4)) % 4);
  const buf = new ArrayBuffer(at + 5 * n);
  const v = new DataView(buf);
  "CMAP".split("").forEach((c, i) => v.setUint8(i, c.charCodeAt(0)));
  v.setUint16(4, 1, true);
  v.setUint16(6, 0, true);
  v.setUint32(8, n, true);
  v.setUint32(12, meta.length, true);
  new Uint8Array(buf, 16, meta.length).set(meta);
  xs.forEach((x, i) => v.setUint16(at + 2 * i, x, true));
  ys.forEach((y, i) => v.setUint16(at + 2 * n + 2 * i, y, true));
  codes.forEach((c, i) => v.setUint8(at + 4 * n + i, c));
  return buf;
}

describe("decodePoints", () => {
  it("reads the header and the little-endian arrays", () => {
    const p = decodePoints(doc([0, 65535, 7], [1, 2, 3], [0, 1, 255], { key: "clip", categories: [{ value: "a", count: 1 }] }));
    expect(p.n).toBe(3);
    expect(Array.from(p.x)).toEqual([0, 65535, 7]);
    expect(Array.from(p.y)).toEqual([1, 2, 3]);
    expect(Array.from(p.codes)).toEqual([0, 1, 255]);
    expect(p.header.key).toBe("clip");
  });
  it("refuses what is not a map document", () => {
    expect(() => decodePoints(new ArrayBuffer(16))).toThrow(/not a corral map/);
  });
});

describe("inside", () => {
  const square: Vertex[] = [[10, 10], [20, 10], [20, 20], [10, 20]];
  it("is half-open like the server: left and top edges in, right and bottom out", () => {
    expect(inside(square, 15, 15)).toBe(true);
    expect(inside(square, 10, 15)).toBe(true);
    expect(inside(square, 20, 15)).toBe(false);
    expect(inside(square, 15, 10)).toBe(true);
    expect(inside(square, 15, 20)).toBe(false);
    expect(inside(square, 9, 15)).toBe(false);
  });
  it("follows the even-odd rule on a concave polygon", () => {
    const u: Vertex[] = [[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]];
    expect(inside(u, 5, 20)).toBe(true);
    expect(inside(u, 15, 20)).toBe(false);
    expect(inside(u, 25, 20)).toBe(true);
  });
  it("selectMask agrees with inside on every point", () => {
    const xs = Array.from({ length: 400 }, (_, i) => (i * 37) % 41);
    const ys = Array.from({ length: 400 }, (_, i) => (i * 53) % 43);
    const p = decodePoints(doc(xs, ys, xs.map(() => 0), { key: "k", categories: [] }));
    const tri: Vertex[] = [[3, 2], [38, 9], [12, 40]];
    const mask = selectMask(p, tri);
    xs.forEach((x, i) => expect(mask[i]).toBe(inside(tri, x, ys[i]) ? 1 : 0));
  });
  it("selectMask's bands agree with inside on a 64-vertex star over the whole grid", () => {
    let seed = 7;
    const rand = (n: number) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    const star: Vertex[] = Array.from({ length: 64 }, (_, i) => {
      const r = i % 2 ? 9000 + rand(20000) : 30000, t = (2 * Math.PI * i) / 64;
      return [Math.round(32767 + r * Math.cos(t)), Math.round(32767 + r * Math.sin(t))];
    });
    // random points, every vertex and its neighbours (edge ends and band boundaries)
    const pts: Vertex[] = Array.from({ length: 20000 }, () => [rand(65536), rand(65536)]);
    for (const [vx, vy] of star) for (const d of [-1, 0, 1]) pts.push([vx + d, vy], [vx, vy + d]);
    const p = decodePoints(doc(pts.map((q) => q[0]), pts.map((q) => q[1]), pts.map(() => 0), { key: "k", categories: [] }));
    const mask = selectMask(p, star);
    let shown = 0;
    pts.forEach(([x, y], i) => { expect(mask[i]).toBe(inside(star, x, y) ? 1 : 0); shown += mask[i]; });
    expect(shown).toBeGreaterThan(1000);
  });
});

describe("lasso", () => {
  it("simplifies a drawn path to at most 64 integer vertices on the grid", () => {
    const path: Vertex[] = Array.from({ length: 1000 }, (_, i) => [100.4 + i, -5 + i * 70]);
    const poly = simplify(path);
    expect(poly.length).toBeLessThanOrEqual(64);
    expect(poly.every(([x, y]) => Number.isInteger(x) && x >= 0 && y >= 0 && y <= 65535)).toBe(true);
  });
  it("writes the in_map clause and ands it onto the filter", () => {
    expect(lassoClause("clip", [[1, 2], [3, 4], [5, 6]])).toBe("in_map clip polygon(1, 2, 3, 4, 5, 6)");
    expect(lassoClause("my key", [[1, 2], [3, 4], [5, 6]])).toBe("in_map `my key` polygon(1, 2, 3, 4, 5, 6)");
    expect(withArea({ where: "a or b", offset: 0 }, "in_map k box(0, 0, 1, 1)")).toEqual({ where: "(a or b) and in_map k box(0, 0, 1, 1)", offset: 1 });
    expect(withArea({ where: "", offset: 0 }, "X")).toEqual({ where: "X", offset: 0 });
    expect(withArea({ where: "a", offset: 0 }, "")).toEqual({ where: "a", offset: 0 });
    expect(typedWithArea("a or b", "X")).toBe("(a or b) and X");
    expect(typedWithArea("", "X")).toBe("X");
  });
});

describe("view", () => {
  it("fits the grid, and maps screen and grid both ways", () => {
    const v = fitView(600, 400);
    const [sx, sy] = toScreen(v, 65535, 65535);
    expect(sx).toBeLessThanOrEqual(600);
    expect(sy).toBeLessThanOrEqual(400);
    const [gx, gy] = toGrid(v, sx, sy);
    expect(gx).toBeCloseTo(65535);
    expect(gy).toBeCloseTo(65535);
  });
  it("zooms about the cursor", () => {
    const v = fitView(600, 400);
    const before = toGrid(v, 100, 50);
    const z = zoomAt(v, 100, 50, 2);
    expect(z.scale).toBeCloseTo(v.scale * 2);
    const after = toGrid(z, 100, 50);
    expect(after[0]).toBeCloseTo(before[0]);
    expect(after[1]).toBeCloseTo(before[1]);
  });
});
