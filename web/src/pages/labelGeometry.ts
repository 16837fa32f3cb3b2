// Labels (the Encord label-row document) as shapes in pixels, for drawing over an image or a
// video frame. Coordinates in a label document are normalised (0..1 of the width and height),
// except a bitmask's top/left/width/height, which are pixels.

export interface Pt {
  x: number;
  y: number;
}

export type Drawn =
  | { kind: "box" | "rotated" | "polygon"; points: Pt[] }
  | { kind: "polyline"; points: Pt[] }
  | { kind: "point"; at: Pt }
  | { kind: "bitmask"; path: string; cells: number };

export interface LabelObject {
  objectHash?: string;
  featureHash?: string;
  name?: string;
  color?: string;
  shape?: string;
  boundingBox?: { x: number; y: number; w: number; h: number };
  rotatableBoundingBox?: { x: number; y: number; w: number; h: number; theta: number };
  polygon?: Record<string, Pt> | Pt[];
  polygons?: number[][][];
  polyline?: Record<string, Pt> | Pt[];
  point?: Record<string, Pt>;
  skeleton?: Record<string, Pt & { name?: string }>;
  bitmask?: { top: number; left: number; width: number; height: number; rleString: string };
  [k: string]: unknown;
}

export interface FrameLabels {
  objects: LabelObject[];
  classifications: { featureHash?: string; name?: string; classificationHash?: string; [k: string]: unknown }[];
}

/** A normalised point in pixels. */
export function toPixels(p: Pt, width: number, height: number): Pt {
  return { x: p.x * width, y: p.y * height };
}

/** The points of a `{"0": {...}, "1": {...}}` map (or a list), in index order. */
export function orderedPoints(value: Record<string, Pt> | Pt[] | undefined): Pt[] {
  if (!value) return [];
  if (Array.isArray(value)) return value;
  return Object.keys(value)
    .sort((a, b) => Number(a) - Number(b))
    .map((k) => value[k]);
}

export function boxCorners(b: { x: number; y: number; w: number; h: number }, width: number, height: number): Pt[] {
  const x0 = b.x * width, y0 = b.y * height, x1 = (b.x + b.w) * width, y1 = (b.y + b.h) * height;
  return [{ x: x0, y: y0 }, { x: x1, y: y0 }, { x: x1, y: y1 }, { x: x0, y: y1 }];
}

/** A rotatable box: (x, y, w, h) of the box before rotation, turned `theta` degrees clockwise
 * about its centre. Rotating in pixels (not normalised units) keeps right angles on non-square
 * images. */
export function rotatedCorners(
  b: { x: number; y: number; w: number; h: number; theta: number },
  width: number,
  height: number,
): Pt[] {
  const cx = (b.x + b.w / 2) * width, cy = (b.y + b.h / 2) * height;
  const hw = (b.w * width) / 2, hh = (b.h * height) / 2;
  const t = (b.theta * Math.PI) / 180, cos = Math.cos(t), sin = Math.sin(t);
  return [[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]].map(([dx, dy]) => ({
    x: cx + dx * cos - dy * sin,
    y: cy + dx * sin + dy * cos,
  }));
}

/** The run lengths of an Encord RLE string (the SDK's `_string_to_rle`). */
export function decodeRle(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more && p < s.length) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1;
      k += 1;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

export const MAX_BITMASK_CELLS = 200_000;

/** A bitmask as an SVG path of its horizontal runs (row-major, starting with a run of 0s), in
 * pixels of the image: `top`/`left` place it. Stops after MAX_BITMASK_CELLS runs. */
export function bitmaskPath(m: { top: number; left: number; width: number; height: number; rleString: string }): {
  path: string;
  cells: number;
} {
  const runs = decodeRle(m.rleString);
  const parts: string[] = [];
  let pos = 0, cells = 0;
  const total = m.width * m.height;
  for (let i = 0; i < runs.length && pos < total && cells < MAX_BITMASK_CELLS; i += 1) {
    const len = Math.max(0, runs[i]);
    if (i % 2 === 1) {
      let start = pos;
      const end = Math.min(pos + len, total);
      while (start < end) {
        const row = Math.floor(start / m.width), col = start % m.width;
        const span = Math.min(end - start, m.width - col);
        parts.push(`M${m.left + col} ${m.top + row}h${span}v1h${-span}z`);
        cells += 1;
        start += span;
      }
    }
    pos += len;
  }
  return { path: parts.join(""), cells };
}

/** The shape of one object label in pixels, or null if it has no geometry corral can draw. */
export function drawObject(o: LabelObject, width: number, height: number): Drawn | null {
  const px = (p: Pt) => toPixels(p, width, height);
  switch (o.shape) {
    case "bounding_box":
      return o.boundingBox ? { kind: "box", points: boxCorners(o.boundingBox, width, height) } : null;
    case "rotatable_bounding_box":
      return o.rotatableBoundingBox ? { kind: "rotated", points: rotatedCorners(o.rotatableBoundingBox, width, height) } : null;
    case "polygon": {
      let points = orderedPoints(o.polygon);
      if (points.length === 0 && o.polygons?.[0]?.[0]) {
        const flat = o.polygons[0][0];
        points = [];
        for (let i = 0; i + 1 < flat.length; i += 2) points.push({ x: flat[i], y: flat[i + 1] });
      }
      return points.length ? { kind: "polygon", points: points.map(px) } : null;
    }
    case "polyline": {
      const points = orderedPoints(o.polyline);
      return points.length ? { kind: "polyline", points: points.map(px) } : null;
    }
    case "point": {
      const first = orderedPoints(o.point)[0];
      return first ? { kind: "point", at: px(first) } : null;
    }
    case "skeleton": {
      const points = orderedPoints(o.skeleton);
      return points.length ? { kind: "polyline", points: points.map(px) } : null;
    }
    case "bitmask":
      return o.bitmask ? { kind: "bitmask", ...bitmaskPath(o.bitmask) } : null;
    default:
      return null;
  }
}

export function svgPoints(points: Pt[]): string {
  return points.map((p) => `${p.x.toFixed(2)},${p.y.toFixed(2)}`).join(" ");
}

/** The labels of one frame: an image's labels are `{objects, classifications}`, a video's are
 * keyed by frame number. */
export function frameLabels(labels: unknown, frame: number): FrameLabels {
  if (!labels || typeof labels !== "object") return { objects: [], classifications: [] };
  const l = labels as Record<string, unknown>;
  const pick = (v: unknown): FrameLabels => {
    const f = (v ?? {}) as Partial<FrameLabels>;
    return { objects: Array.isArray(f.objects) ? f.objects : [], classifications: Array.isArray(f.classifications) ? f.classifications : [] };
  };
  if ("objects" in l || "classifications" in l) return pick(l);
  return pick(l[String(frame)]);
}

/** Frames of a video's labels that have any label, in order. */
export function labelledFrames(labels: unknown): number[] {
  if (!labels || typeof labels !== "object" || "objects" in (labels as object)) return [];
  return Object.keys(labels as object).map(Number).filter((n) => Number.isInteger(n)).sort((a, b) => a - b);
}

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990"];

/** A stable colour per feature: the ontology's own colour if it has one, else the palette's
 * colour for its place in the ontology (distinct for the first ten), else one from its hash. */
export function colourFor(featureHash: string | undefined, ontologyColour?: string, position?: number): string {
  if (ontologyColour) return ontologyColour;
  if (position !== undefined && position >= 0) return PALETTE[position % PALETTE.length];
  let h = 0;
  for (const ch of featureHash ?? "") h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}
