// The 2-D embedding map's pure logic: decoding the binary points document
// (GET /api/v1/index/map/{key}/points; docs/vectors.md), the view transform, and the lasso:
// the same even-odd rule in exact integer arithmetic as the server's `in_map` filter, so what
// the map highlights is what the grid shows.

export const GRID = 65535;
export const MAX_VERTICES = 64;

export interface Category {
  value: unknown;
  count: number;
}

export interface MapHeader {
  key: string;
  map_id: number;
  method: string;
  color: string | null;
  categories: Category[];
  other: number;
  points_total: number;
  unmapped: number;
}

export interface MapPoints {
  header: MapHeader;
  n: number;
  x: Uint16Array;
  y: Uint16Array;
  codes: Uint8Array;
}

/** Decode the points document: "CMAP", version, flags, n, header length, JSON header, then
 * uint16 x[n], uint16 y[n], uint8 category[n] (little-endian, the arrays 4-byte aligned). */
export function decodePoints(buf: ArrayBuffer): MapPoints {
  const view = new DataView(buf);
  const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
  if (magic !== "CMAP") throw new Error("not a corral map document");
  const version = view.getUint16(4, true);
  if (version !== 1) throw new Error(`unknown map document version ${version}`);
  const n = view.getUint32(8, true);
  const m = view.getUint32(12, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 16, m))) as MapHeader;
  const at = 16 + m + ((4 - (m % 4)) % 4);
  // copies: Uint16Array needs 2-byte alignment, which `at + 2n` has (at is a multiple of 4)
  const x = new Uint16Array(buf.slice(at, at + 2 * n));
  const y = new Uint16Array(buf.slice(at + 2 * n, at + 4 * n));
  const codes = new Uint8Array(buf.slice(at + 4 * n, at + 5 * n));
  return { header, n, x, y, codes };
}

export type Vertex = [number, number];

interface Edge { lo: number; hi: number; a: number; b: number; c: number }

function edges(polygon: Vertex[]): Edge[] {
  const out: Edge[] = [];
  for (let i = 0; i < polygon.length; i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[(i + 1) % polygon.length];
    const d = yj - yi;
    if (d === 0) continue;
    let a = d, b = -(xj - xi), c = xi * d - (xj - xi) * yi;
    if (d < 0) { a = -a; b = -b; c = -c; }
    out.push({ lo: Math.min(yi, yj), hi: Math.max(yi, yj), a, b, c });
  }
  return out;
}

/** Whether grid point (px, py) is inside `polygon` (integer vertices): the server's rule. */
export function inside(polygon: Vertex[], px: number, py: number): boolean {
  let odd = false;
  for (const e of edges(polygon)) if (py >= e.lo && py < e.hi && e.a * px + e.b * py < e.c) odd = !odd;
  return odd;
}

/** Horizontal bands of the polygon's bounding box: the edges whose [lo, hi) rows meet each
 * band, so a point tests the two or three edges of its band rather than all of them. */
function banded(es: Edge[], y0: number, y1: number) {
  const count = Math.max(1, Math.min(1024, es.length * 8));
  const span = y1 - y0 + 1;
  const band = (y: number) => Math.floor(((y - y0) * count) / span);
  const lists: number[][] = Array.from({ length: count }, () => []);
  es.forEach((e, k) => {
    const first = band(Math.max(e.lo, y0)), last = band(Math.min(e.hi - 1, y1));
    for (let b = first; b <= last; b++) lists[b].push(k);
  });
  const starts = new Int32Array(count + 1);
  lists.forEach((l, b) => { starts[b + 1] = starts[b] + l.length; });
  const which = Int32Array.from(lists.flat());
  return { count, span, starts, which };
}

/** 1 for each point inside the polygon, else 0: the bounding box first, then the even-odd rule
 * over the edges of the point's band (the same integer arithmetic as `inside`, in typed arrays:
 * a million points in tens of milliseconds). */
export function selectMask(points: MapPoints, polygon: Vertex[]): Uint8Array {
  const mask = new Uint8Array(points.n);
  if (polygon.length < 3) return mask;
  const es = edges(polygon);
  let x0 = GRID, y0 = GRID, x1 = 0, y1 = 0;
  for (const [x, y] of polygon) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
  const lo = Int32Array.from(es, (e) => e.lo), hi = Int32Array.from(es, (e) => e.hi);
  const a = Float64Array.from(es, (e) => e.a), b = Float64Array.from(es, (e) => e.b), c = Float64Array.from(es, (e) => e.c);
  const { count, span, starts, which } = banded(es, y0, y1);
  const { x, y } = points;
  for (let i = 0; i < points.n; i++) {
    const px = x[i], py = y[i];
    if (px < x0 || px > x1 || py < y0 || py > y1) continue;
    const band = Math.floor(((py - y0) * count) / span);
    let odd = false;
    for (let j = starts[band], end = starts[band + 1]; j < end; j++) {
      const k = which[j];
      if (py >= lo[k] && py < hi[k] && a[k] * px + b[k] * py < c[k]) odd = !odd;
    }
    if (odd) mask[i] = 1;
  }
  return mask;
}

/** A drawn path as at most `max` integer grid vertices (evenly picked, clamped, repeats dropped). */
export function simplify(path: Vertex[], max = MAX_VERTICES): Vertex[] {
  const step = Math.max(1, path.length / max);
  const out: Vertex[] = [];
  for (let i = 0; i < path.length && out.length < max; i += step) {
    const [x, y] = path[Math.floor(i)];
    const v: Vertex = [clamp(Math.round(x)), clamp(Math.round(y))];
    const last = out[out.length - 1];
    if (!last || last[0] !== v[0] || last[1] !== v[1]) out.push(v);
  }
  return out;
}

const clamp = (v: number) => Math.min(GRID, Math.max(0, v));

const BARE = /^[A-Za-z0-9_.-]+$/;

/** The filter clause of a lasso, in the index's text syntax. */
export function lassoClause(key: string, polygon: Vertex[]): string {
  const name = BARE.test(key) ? key : `\`${key}\``;
  return `in_map ${name} polygon(${polygon.map(([x, y]) => `${x}, ${y}`).join(", ")})`;
}

/** A composed filter with the map's clause and-ed on (the rest in parentheses, first). */
export function withArea<T extends { where: string; offset: number }>(base: T, clause: string): T {
  if (!clause) return base;
  if (!base.where) return { ...base, where: clause, offset: 0 };
  return { ...base, where: `(${base.where}) and ${clause}`, offset: base.offset + 1 };
}

/** Typed text with the map's clause, for requests built from the typed text (facets). */
export function typedWithArea(typed: string, clause: string): string {
  if (!clause) return typed;
  return typed.trim() ? `(${typed.trim()}) and ${clause}` : clause;
}

// -- the view: screen = grid * scale + translation (y down, as on screen) --------------------------

export interface View { scale: number; tx: number; ty: number }

export function fitView(width: number, height: number, pad = 12): View {
  const scale = Math.max(1e-6, Math.min(width - 2 * pad, height - 2 * pad) / GRID);
  return { scale, tx: (width - GRID * scale) / 2, ty: (height - GRID * scale) / 2 };
}

export function toGrid(v: View, sx: number, sy: number): Vertex {
  return [(sx - v.tx) / v.scale, (sy - v.ty) / v.scale];
}

export function toScreen(v: View, gx: number, gy: number): Vertex {
  return [gx * v.scale + v.tx, gy * v.scale + v.ty];
}

/** Zoom by `factor` keeping the grid point under (sx, sy) where it is. */
export function zoomAt(v: View, sx: number, sy: number, factor: number): View {
  const scale = Math.min(Math.max(v.scale * factor, 1e-4), 1);
  const [gx, gy] = toGrid(v, sx, sy);
  return { scale, tx: sx - gx * scale, ty: sy - gy * scale };
}

// -- colours ---------------------------------------------------------------------------------------

const BASE = [
  [0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16], [0.58, 0.4, 0.74],
  [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.5, 0.5, 0.5], [0.74, 0.74, 0.13], [0.09, 0.75, 0.81],
];

/** RGB (0..1) of each category code: 0 (no value) grey, 255 (other) dark grey, 1.. a palette. */
export function palette(): Float32Array {
  const out = new Float32Array(256 * 3);
  for (let code = 0; code < 256; code++) {
    let rgb: number[];
    if (code === 0) rgb = [0.62, 0.65, 0.7];
    else if (code === 255) rgb = [0.35, 0.35, 0.38];
    else {
      const base = BASE[(code - 1) % BASE.length];
      const shade = 1 - 0.25 * Math.floor((code - 1) / BASE.length) % 0.75;
      rgb = base.map((c) => c * shade);
    }
    out.set(rgb, code * 3);
  }
  return out;
}

export function categoryLabel(c: Category): string {
  const v = c.value;
  if (v !== null && typeof v === "object" && "from" in v && "to" in v) {
    const r = v as { from: unknown; to: unknown };
    const show = (x: unknown) => (typeof x === "number" ? Number(x.toPrecision(3)).toLocaleString() : String(x).slice(0, 10));
    return `${show(r.from)} – ${show(r.to)}`;
  }
  return String(v);
}
