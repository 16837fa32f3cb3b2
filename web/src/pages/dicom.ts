// A small DICOM reader for the viewer: uncompressed (explicit or implicit VR little endian)
// monochrome or RGB slices, drawn to 8-bit greyscale/RGBA with the window the file gives, or
// its value range. Compressed transfer syntaxes are reported, not guessed at.

export interface DicomImage {
  rows: number;
  columns: number;
  rgba: Uint8ClampedArray;
}

const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);
const UNCOMPRESSED = new Set(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]);

export class DicomError extends Error {}

interface Element {
  group: number;
  element: number;
  offset: number;
  length: number;
}

function* elements(view: DataView, start: number, explicit: boolean): Generator<Element> {
  let p = start;
  while (p + 8 <= view.byteLength) {
    const group = view.getUint16(p, true);
    const element = view.getUint16(p + 2, true);
    let length: number;
    let header: number;
    const vr = String.fromCharCode(view.getUint8(p + 4), view.getUint8(p + 5));
    if (group === 0xfffe) {
      header = 8;
      length = view.getUint32(p + 4, true);
      if (length === 0xffffffff) length = 0;
    } else if (explicit && /^[A-Z]{2}$/.test(vr)) {
      if (LONG_VRS.has(vr)) {
        header = 12;
        length = view.getUint32(p + 8, true);
      } else {
        header = 8;
        length = view.getUint16(p + 6, true);
      }
    } else {
      header = 8;
      length = view.getUint32(p + 4, true);
    }
    if (length === 0xffffffff) {
      // A sequence of undefined length: skip to its delimiter (FFFE,E0DD).
      let q = p + header;
      while (q + 8 <= view.byteLength && !(view.getUint16(q, true) === 0xfffe && view.getUint16(q + 2, true) === 0xe0dd)) q += 2;
      yield { group, element, offset: p + header, length: 0 };
      p = q + 8;
      continue;
    }
    yield { group, element, offset: p + header, length };
    p += header + length;
  }
}

function text(view: DataView, el: Element): string {
  let s = "";
  for (let i = 0; i < el.length; i++) s += String.fromCharCode(view.getUint8(el.offset + i));
  return s.replace(/[\0 ]+$/, "").trim();
}

export function decodeDicom(buffer: ArrayBuffer): DicomImage {
  const view = new DataView(buffer);
  if (buffer.byteLength < 132 || text(view, { group: 0, element: 0, offset: 128, length: 4 }) !== "DICM") {
    throw new DicomError("not a DICOM file (no DICM marker)");
  }
  let syntax = "1.2.840.10008.1.2.1";
  let p = 132;
  for (const el of elements(view, 132, true)) {
    if (el.group !== 0x0002) break;
    if (el.element === 0x0010) syntax = text(view, el);
    p = el.offset + el.length;
  }
  if (!UNCOMPRESSED.has(syntax)) throw new DicomError(`this slice uses transfer syntax ${syntax}, which the viewer cannot decode`);
  const explicit = syntax === "1.2.840.10008.1.2.1";
  let rows = 0, columns = 0, bits = 16, signed = false, samples = 1;
  let center: number | null = null, width: number | null = null, slope = 1, intercept = 0;
  let pixels: Element | null = null;
  for (const el of elements(view, p, explicit)) {
    const tag = (el.group << 16) | el.element;
    if (tag === 0x00280010) rows = view.getUint16(el.offset, true);
    else if (tag === 0x00280011) columns = view.getUint16(el.offset, true);
    else if (tag === 0x00280100) bits = view.getUint16(el.offset, true);
    else if (tag === 0x00280103) signed = view.getUint16(el.offset, true) === 1;
    else if (tag === 0x00280002) samples = view.getUint16(el.offset, true);
    else if (tag === 0x00281050) center = parseFloat(text(view, el).split("\\")[0]);
    else if (tag === 0x00281051) width = parseFloat(text(view, el).split("\\")[0]);
    else if (tag === 0x00281053) slope = parseFloat(text(view, el)) || 1;
    else if (tag === 0x00281052) intercept = parseFloat(text(view, el)) || 0;
    else if (tag === 0x7fe00010) { pixels = el; break; }
  }
  if (!pixels || !rows || !columns) throw new DicomError("the file has no pixel data");
  const n = rows * columns;
  const rgba = new Uint8ClampedArray(n * 4);
  if (samples === 3 && bits === 8) {
    for (let i = 0; i < n; i++) {
      rgba[i * 4] = view.getUint8(pixels.offset + i * 3);
      rgba[i * 4 + 1] = view.getUint8(pixels.offset + i * 3 + 1);
      rgba[i * 4 + 2] = view.getUint8(pixels.offset + i * 3 + 2);
      rgba[i * 4 + 3] = 255;
    }
    return { rows, columns, rgba };
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const raw = bits === 8 ? (signed ? view.getInt8(pixels.offset + i) : view.getUint8(pixels.offset + i))
      : signed ? view.getInt16(pixels.offset + i * 2, true) : view.getUint16(pixels.offset + i * 2, true);
    values[i] = raw * slope + intercept;
  }
  let lo: number, hi: number;
  if (center !== null && width !== null && width > 0) {
    lo = center - width / 2;
    hi = center + width / 2;
  } else {
    lo = Infinity;
    hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  }
  const span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < n; i++) {
    const g = Math.round(((values[i] - lo) / span) * 255);
    rgba[i * 4] = rgba[i * 4 + 1] = rgba[i * 4 + 2] = g;
    rgba[i * 4 + 3] = 255;
  }
  return { rows, columns, rgba };
}
