import { describe, expect, it } from "vitest";
import { DicomError, decodeDicom } from "./dicom";

// An explicit-VR little-endian file: preamble, meta group, rows/columns/bits, 2x2 16-bit pixels.
function build(pixels: number[], syntax = "1.2.840.10008.1.2.1"): ArrayBuffer {
  const bytes: number[] = [...new Array(128).fill(0), ..."DICM".split("").map((c) => c.charCodeAt(0))];
  const u16 = (v: number) => [v & 255, v >> 8];
  const u32 = (v: number) => [v & 255, (v >> 8) & 255, (v >> 16) & 255, (v >>> 24) & 255];
  const str = (s: string) => { const b = s.split("").map((c) => c.charCodeAt(0)); if (b.length % 2) b.push(0); return b; };
  const short = (g: number, e: number, vr: string, value: number[]) => [...u16(g), ...u16(e), ...str(vr), ...u16(value.length), ...value];
  const long = (g: number, e: number, vr: string, value: number[]) => [...u16(g), ...u16(e), ...str(vr), 0, 0, ...u32(value.length), ...value];
  bytes.push(...short(2, 0x10, "UI", str(syntax)));
  bytes.push(...short(0x28, 0x10, "US", u16(2)), ...short(0x28, 0x11, "US", u16(2)), ...short(0x28, 0x100, "US", u16(16)));
  bytes.push(...long(0x7fe0, 0x10, "OW", pixels.flatMap(u16)));
  return new Uint8Array(bytes).buffer;
}

describe("decodeDicom", () => {
  it("stretches 16-bit values to greyscale over their range", () => {
    const img = decodeDicom(build([0, 100, 200, 400]));
    expect([img.rows, img.columns]).toEqual([2, 2]);
    expect(Array.from(img.rgba.filter((_, i) => i % 4 === 0))).toEqual([0, 64, 128, 255]);
  });

  it("says which compressed syntax it cannot decode", () => {
    expect(() => decodeDicom(build([0, 0, 0, 0], "1.2.840.10008.1.2.4.50"))).toThrow(/1\.2\.840\.10008\.1\.2\.4\.50/);
  });

  it("refuses a file that is not DICOM", () => {
    expect(() => decodeDicom(new ArrayBuffer(200))).toThrow(DicomError);
  });
});
