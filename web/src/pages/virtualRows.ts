// Which rows of a very long list are on screen, and where to draw them. Browsers cap an
// element's height (Chromium at about 33.5 million px), so a million-item grid (200,000 rows
// of 178 px = 35.6 million px) cannot be one tall element: past MAX_PX the scrollable height
// stays MAX_PX and scroll positions map proportionally onto the rows.

export const MAX_PX = 10_000_000;

export interface Layout {
  contentHeight: number; // the scrollable element's height, px
  firstRow: number;
  lastRow: number; // inclusive
  rowTop: (row: number) => number; // where to draw a row, in content px
}

export function layout(rows: number, rowHeight: number, scrollTop: number, viewport: number, overscan = 3, max = MAX_PX): Layout {
  const total = rows * rowHeight;
  if (rows === 0) return { contentHeight: 0, firstRow: 0, lastRow: -1, rowTop: () => 0 };
  let virtualTop: number;
  let contentHeight: number;
  let shift: number; // content px minus virtual px, for the rows drawn now
  if (total <= max) {
    contentHeight = total;
    virtualTop = scrollTop;
    shift = 0;
  } else {
    contentHeight = max;
    const fraction = Math.min(1, Math.max(0, scrollTop / Math.max(1, max - viewport)));
    virtualTop = fraction * Math.max(0, total - viewport);
    shift = scrollTop - virtualTop;
  }
  const firstRow = Math.max(0, Math.floor(virtualTop / rowHeight) - overscan);
  const lastRow = Math.min(rows - 1, Math.floor((virtualTop + viewport) / rowHeight) + overscan);
  return { contentHeight, firstRow, lastRow, rowTop: (row) => row * rowHeight + shift };
}

/** The scrollTop that shows `row` (at the top, or just enough to bring it into view). */
export function scrollTopFor(row: number, rows: number, rowHeight: number, viewport: number, current: number, max = MAX_PX): number {
  const total = rows * rowHeight;
  const scaled = total > max;
  const toScroll = (virtual: number) => (scaled ? (virtual / Math.max(1, total - viewport)) * (max - viewport) : virtual);
  const fromScroll = (scroll: number) => (scaled ? (scroll / Math.max(1, max - viewport)) * (total - viewport) : scroll);
  const top = row * rowHeight;
  const visibleTop = fromScroll(current);
  if (top >= visibleTop && top + rowHeight <= visibleTop + viewport) return current; // already in view
  const target = top < visibleTop ? top : top + rowHeight - viewport;
  return Math.max(0, Math.min(scaled ? max - viewport : total - viewport, toScroll(Math.max(0, Math.min(total - viewport, target)))));
}
