// "Find similar" and text or image search in the explorer, as pure functions over the schema and
// the answer of POST /api/v1/index/similar (docs/vectors.md). The server decides what is valid.

import type { SchemaDoc } from "./schemaOps";

export interface EmbeddingKey {
  name: string;
  size: number;
  metric: string;
  text: boolean; // its endpoint embeds texts
  image: boolean; // its endpoint embeds images
}

/** The schema's live embedding keys, by name, with what their endpoints take. */
export function embeddingKeys(schema: SchemaDoc | null): EmbeddingKey[] {
  if (!schema) return [];
  return Object.entries(schema.keys)
    .filter(([, d]) => d.type === "embedding" && !d.deleted && typeof d.size === "number")
    .map(([name, d]) => {
      const api = (d.api ?? null) as { embed_text?: boolean; embed_b64_image?: boolean } | null;
      return { name, size: d.size as number, metric: typeof d.metric === "string" ? d.metric : "cosine", text: api?.embed_text === true, image: api?.embed_b64_image === true };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** What a similarity search asks: like an item, near a text, or near an image (base64). */
export type SimilarSource = { item: string; title?: string; keys?: string[] } | { text: string } | { image: string; name: string };

/** The embedding keys an item holds a vector for (its metadata shows a marker there, not the numbers). */
export function vectorKeys(metadata: Record<string, unknown>): string[] {
  return Object.entries(metadata)
    .filter(([, v]) => typeof v === "object" && v !== null && "$vector" in v && !(v as { $vector: { missing?: boolean } }).$vector.missing)
    .map(([k]) => k)
    .sort();
}

export interface SimilarRequest {
  key: string;
  k: number;
  where?: string;
  item?: string;
  text?: string;
  image?: string;
  fields: string[];
}

export const RESULT_FIELDS = ["id", "title", "type", "size", "folder_id"];

/** The request body: the source, the key, k, and the explorer's current filter (if any). */
export function similarBody(source: SimilarSource, key: string, k: number, where: string): SimilarRequest {
  const body: SimilarRequest = { key, k, fields: RESULT_FIELDS };
  if (where.trim()) body.where = where;
  if ("item" in source) body.item = source.item;
  else if ("text" in source) body.text = source.text;
  else body.image = source.image;
  return body;
}

/** The key to use: the one chosen if it still exists and can serve the source, else the first that can. */
export function pickKey(keys: EmbeddingKey[], chosen: string | null, source: SimilarSource | null): string | null {
  const usable = keys.filter((k) => source === null || ("item" in source ? !source.keys || source.keys.includes(k.name) : "text" in source ? k.text : k.image));
  if (chosen && usable.some((k) => k.name === chosen)) return chosen;
  return usable[0]?.name ?? null;
}

/** A score as shown: cosine and dot as a number, l2 as the distance it is minus of. */
export function showScore(metric: string, score: number): string {
  if (metric === "l2") return `distance ${(-score).toPrecision(3)}`;
  return score.toFixed(3);
}

/** A short description of what the results are like, for the panel's heading. */
export function describeSource(source: SimilarSource): string {
  if ("item" in source) return `Like “${source.title ?? source.item}”`;
  if ("text" in source) return `Near “${source.text.length > 60 ? source.text.slice(0, 57) + "…" : source.text}”`;
  return `Near the image ${source.name}`;
}

/** A File's bytes as base64 (what the API's image member takes). */
export async function fileBase64(file: Blob): Promise<string> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let out = "";
  for (let i = 0; i < bytes.length; i += 0x8000) out += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(out);
}
