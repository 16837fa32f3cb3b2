// Blocks of a folder's items, fetched by position (GET /api/v1/items/window), so a view of a
// 1,000,000-item folder only ever asks for the blocks on screen.

import type { Item } from "../api";

export const BLOCK = 120;

export function blocksFor(first: number, last: number, total: number, block = BLOCK): number[] {
  if (total <= 0 || last < first) return [];
  const lo = Math.max(0, Math.floor(first / block));
  const hi = Math.min(Math.floor((total - 1) / block), Math.floor(last / block));
  const out: number[] = [];
  for (let b = lo; b <= hi; b++) out.push(b);
  return out;
}

export class WindowCache {
  private blocks = new Map<number, Item[]>();
  private inflight = new Set<number>();
  private readonly maxBlocks: number;
  constructor(maxBlocks = 60) {
    this.maxBlocks = maxBlocks;
  }

  get(index: number): Item | undefined {
    return this.blocks.get(Math.floor(index / BLOCK))?.[index % BLOCK];
  }

  missing(blocks: number[]): number[] {
    return blocks.filter((b) => !this.blocks.has(b) && !this.inflight.has(b));
  }

  start(block: number): void {
    this.inflight.add(block);
  }

  put(block: number, items: Item[]): void {
    this.inflight.delete(block);
    this.blocks.delete(block);
    this.blocks.set(block, items);
    while (this.blocks.size > this.maxBlocks) {
      const oldest = this.blocks.keys().next().value as number;
      this.blocks.delete(oldest);
    }
  }

  fail(block: number): void {
    this.inflight.delete(block);
  }

  clear(): void {
    this.blocks.clear();
    this.inflight.clear();
  }
}

/** Where keyboard navigation goes in a grid of `cols` columns over `total` items. */
export function nextIndex(current: number, key: string, cols: number, total: number): number | null {
  if (total === 0) return null;
  const delta: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, j: 1, k: -1, Home: -Infinity, End: Infinity };
  if (!(key in delta)) return null;
  if (current < 0) return 0;
  const d = delta[key];
  if (d === -Infinity) return 0;
  if (d === Infinity) return total - 1;
  return Math.min(total - 1, Math.max(0, current + d));
}

/** Consecutive blocks as runs [first, count], at most `maxRun` blocks each, so that adjacent
 * blocks come in one request (one index walk to the offset instead of several). */
export function runsOf(blocks: number[], maxRun: number): [number, number][] {
  const sorted = [...new Set(blocks)].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const b of sorted) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === b && last[1] < maxRun) last[1] += 1;
    else out.push([b, 1]);
  }
  return out;
}
