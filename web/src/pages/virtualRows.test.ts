import { describe, expect, it } from "vitest";
import { layout, scrollTopFor } from "./virtualRows";

describe("layout", () => {
  it("lays short lists out one to one", () => {
    const l = layout(100, 10, 200, 50, 0);
    expect(l.contentHeight).toBe(1000);
    expect([l.firstRow, l.lastRow]).toEqual([20, 25]);
    expect(l.rowTop(20)).toBe(200);
  });

  it("caps the height of huge lists and still reaches the last row", () => {
    const rows = 200_000, h = 178, viewport = 800, max = 10_000_000;
    const end = layout(rows, h, max - viewport, viewport, 0, max);
    expect(end.contentHeight).toBe(max);
    expect(end.lastRow).toBe(rows - 1);
    // the last row is drawn inside the scrollable area, at the bottom of the viewport
    expect(end.rowTop(rows - 1) + h).toBeCloseTo(max, 0);
    const middle = layout(rows, h, (max - viewport) / 2, viewport, 0, max);
    expect(Math.abs(middle.firstRow - rows / 2)).toBeLessThan(5);
    // rows drawn now are contiguous and on screen
    expect(middle.rowTop(middle.firstRow)).toBeLessThanOrEqual((max - viewport) / 2);
    expect(middle.rowTop(middle.firstRow + 1) - middle.rowTop(middle.firstRow)).toBe(h);
  });
});

describe("scrollTopFor", () => {
  it("does not move when the row is in view, and brings it in otherwise", () => {
    expect(scrollTopFor(21, 100, 10, 50, 200)).toBe(200);
    expect(scrollTopFor(5, 100, 10, 50, 200)).toBe(50);
    expect(scrollTopFor(40, 100, 10, 50, 200)).toBe(360);
  });

  it("finds any row of a huge list", () => {
    const rows = 200_000, h = 178, viewport = 800, max = 10_000_000;
    for (const row of [0, 100_000, rows - 1]) {
      const top = scrollTopFor(row, rows, h, viewport, 0, max);
      const l = layout(rows, h, top, viewport, 0, max);
      expect(row).toBeGreaterThanOrEqual(l.firstRow);
      expect(row).toBeLessThanOrEqual(l.lastRow);
      expect(l.rowTop(row)).toBeGreaterThanOrEqual(top - 1);
      expect(l.rowTop(row) + h).toBeLessThanOrEqual(top + viewport + 1);
    }
  });
});
