// Schema edits as pure functions over the native schema document. The server decides what is
// allowed (and says why not); these only build the document the admin asked for.

export interface KeyDef {
  type: string;
  required?: boolean;
  max_length?: number;
  size?: number;
  values?: string[];
  deleted?: "soft" | "hard";
  [k: string]: unknown;
}

export interface SchemaDoc {
  strict_metadata: boolean;
  keys: Record<string, KeyDef>;
}

export const TYPES = ["varchar", "text", "number", "boolean", "datetime", "enum", "embedding", "uuid", "user", "geospatial"];

const clone = (doc: SchemaDoc): SchemaDoc => JSON.parse(JSON.stringify(doc)) as SchemaDoc;

export function addKey(doc: SchemaDoc, name: string, def: KeyDef): SchemaDoc {
  const out = clone(doc);
  out.keys[name] = def;
  return out;
}

export function retype(doc: SchemaDoc, name: string, def: KeyDef): SchemaDoc {
  const out = clone(doc);
  const required = out.keys[name]?.required;
  out.keys[name] = required ? { ...def, required } : def;
  return out;
}

export function softDelete(doc: SchemaDoc, name: string): SchemaDoc {
  const out = clone(doc);
  out.keys[name] = { ...out.keys[name], deleted: "soft" };
  return out;
}

export function hardDelete(doc: SchemaDoc, name: string): SchemaDoc {
  const out = clone(doc);
  out.keys[name] = { ...out.keys[name], deleted: "hard" };
  return out;
}

export function restore(doc: SchemaDoc, name: string): SchemaDoc {
  const out = clone(doc);
  const def = { ...out.keys[name] };
  delete def.deleted;
  out.keys[name] = def;
  return out;
}

export function addEnumOptions(doc: SchemaDoc, name: string, options: string[]): SchemaDoc {
  const out = clone(doc);
  const def = out.keys[name];
  const values = new Set([...(def.values ?? []), ...options.map((o) => o.trim()).filter(Boolean)]);
  out.keys[name] = { ...def, values: [...values].sort() };
  return out;
}

/** A key definition from the add/retype form: only the attributes its type takes. */
export function defFromForm(type: string, opts: { maxLength?: string; size?: string; values?: string; required?: boolean }): KeyDef {
  const def: KeyDef = { type };
  if (type === "varchar" && opts.maxLength) def.max_length = Number(opts.maxLength);
  if (type === "embedding") def.size = Number(opts.size ?? "");
  if (type === "enum") def.values = (opts.values ?? "").split(",").map((v) => v.trim()).filter(Boolean);
  if (opts.required) def.required = true;
  return def;
}

export function describe(def: KeyDef): string {
  if (def.type === "enum") return `enum (${(def.values ?? []).join(", ")})`;
  if (def.type === "embedding") return `embedding (size ${def.size})`;
  if (def.type === "varchar" && def.max_length) return `varchar (max ${def.max_length})`;
  return def.type;
}
