// Where a tile's picture comes from. corral makes small thumbnails of images in integrations
// that are not strict client-only (GET /api/v1/items/{id}/thumbnail, with the session cookie);
// a strict client-only integration's images are loaded from the store through signed URLs,
// which is what that mode promises (corral never reads their bytes).

export interface ThumbSource {
  src: string;
  fallback: string | null; // tried if src fails (a thumbnail not made yet, or refused)
}

export function thumbnailSource(
  item: { id: string; type: string; integration_id: string | null; signed_url: string | null },
  strict: ReadonlySet<string>,
): ThumbSource | null {
  if (item.type !== "image") return null;
  if (item.integration_id && strict.has(item.integration_id)) return item.signed_url ? { src: item.signed_url, fallback: null } : null;
  return { src: `/api/v1/items/${encodeURIComponent(item.id)}/thumbnail`, fallback: item.signed_url };
}

/** Signed URLs asked for in batches: the explorer's results come from the index, which holds no
 * signed URLs, so a tile whose thumbnail is missing (a strict client-only integration's image,
 * or one not made yet) asks for its original here; the tiles that fail together share one
 * request (POST /api/v1/items/sign takes up to 1,000 ids). */
export class SignBatcher {
  private waiting = new Map<string, ((url: string | null) => void)[]>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  constructor(
    private readonly sign: (ids: string[]) => Promise<{ id: string; signed_url: string | null }[]>,
    private readonly delayMs = 30,
    private readonly max = 1000,
  ) {}

  /** The item's signed URL, or null when it has none (or signing failed). */
  url(id: string): Promise<string | null> {
    return new Promise((resolve) => {
      const list = this.waiting.get(id) ?? [];
      list.push(resolve);
      this.waiting.set(id, list);
      this.timer ??= setTimeout(() => this.flush(), this.delayMs);
    });
  }

  private flush(): void {
    this.timer = null;
    const batch = [...this.waiting.entries()];
    this.waiting.clear();
    for (let i = 0; i < batch.length; i += this.max) {
      const chunk = batch.slice(i, i + this.max);
      const settle = (urls: Map<string, string | null>) => chunk.forEach(([id, fns]) => fns.forEach((fn) => fn(urls.get(id) ?? null)));
      this.sign(chunk.map(([id]) => id)).then(
        (items) => settle(new Map(items.map((it) => [it.id, it.signed_url]))),
        () => settle(new Map()),
      );
    }
  }
}
