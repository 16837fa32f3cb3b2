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
