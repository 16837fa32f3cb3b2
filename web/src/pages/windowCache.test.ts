import { describe, expect, it } from "vitest";
import { BLOCK, WindowCache, blocksFor, nextIndex, runsOf } from "./windowCache";
import type { Item } from "../api";

const item = (n: number) => ({ id: `i${n}`, name: `n${n}` }) as unknown as Item;

describe("blocksFor", () => {
  it("asks only for the blocks a visible range touches", () => {
    expect(blocksFor(0, 10, 1_000_000)).toEqual([0]);
    expect(blocksFor(500_000, 500_050, 1_000_000)).toEqual([Math.floor(500_000 / BLOCK), Math.floor(500_050 / BLOCK)].filter((v, i, a) => a.indexOf(v) === i));
    expect(blocksFor(0, 10, 0)).toEqual([]);
    expect(blocksFor(990, 5000, 1000, 100)).toEqual([9]);
  });
});

describe("WindowCache", () => {
  it("keeps a bounded number of blocks and finds items by position", () => {
    const c = new WindowCache(2);
    c.put(0, Array.from({ length: BLOCK }, (_, i) => item(i)));
    c.put(5, Array.from({ length: BLOCK }, (_, i) => item(5 * BLOCK + i)));
    expect(c.get(5 * BLOCK + 3)?.id).toBe(`i${5 * BLOCK + 3}`);
    c.start(7);
    expect(c.missing([0, 5, 6, 7])).toEqual([6]);
    c.put(7, []);
    expect(c.get(3)).toBeUndefined(); // evicted: the oldest block goes first
  });
});

describe("nextIndex", () => {
  it("moves by one with arrows and j/k, by a row up and down, and stays inside", () => {
    expect(nextIndex(5, "ArrowRight", 4, 10)).toBe(6);
    expect(nextIndex(5, "j", 4, 10)).toBe(6);
    expect(nextIndex(5, "k", 4, 10)).toBe(4);
    expect(nextIndex(5, "ArrowDown", 4, 10)).toBe(9);
    expect(nextIndex(9, "ArrowDown", 4, 10)).toBe(9);
    expect(nextIndex(1, "ArrowUp", 4, 10)).toBe(0);
    expect(nextIndex(3, "End", 4, 10)).toBe(9);
    expect(nextIndex(3, "x", 4, 10)).toBeNull();
    expect(nextIndex(-1, "j", 4, 10)).toBe(0);
  });
});

describe("runsOf", () => {
  it("groups adjacent blocks into runs of bounded length", () => {
    expect(runsOf([5, 3, 4, 9], 8)).toEqual([[3, 3], [9, 1]]);
    expect(runsOf([1, 2, 3], 2)).toEqual([[1, 2], [3, 1]]);
    expect(runsOf([], 8)).toEqual([]);
  });
});
