// The one way the UI talks to corral: the public REST API, with the session cookie.
// State-changing requests carry the session's CSRF token (double-submit: the corral_csrf
// cookie, echoed in X-CSRF-Token), which the server checks against the session.

export interface ErrorEntry {
  message: string;
  field?: string;
  [k: string]: unknown;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly errors: ErrorEntry[];
  constructor(status: number, code: string, message: string, errors: ErrorEntry[]) {
    super(message);
    this.status = status;
    this.code = code;
    this.errors = errors;
  }
}

export function readCookie(name: string, cookies: string = document.cookie): string | null {
  for (const part of cookies.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return null;
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** The error shape every corral route answers with, or a fallback naming the status. */
export async function toApiError(res: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (body && typeof body === "object" && "message" in body) {
    const b = body as { message: string; code?: string; errors?: ErrorEntry[] };
    return new ApiError(res.status, b.code ?? "error", b.message, b.errors ?? []);
  }
  return new ApiError(res.status, "http_error", `the server answered ${res.status} ${res.statusText}`, []);
}

export type Query = Record<string, string | number | boolean | undefined | null | string[]>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
    else qs.append(k, String(v));
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

/** A path with each interpolated value percent-encoded as one segment: `apiPath\`/api/v1/datasets/${id}/link\``.
 * Values taken from the page's address (a route parameter, `?item=`) are the visitor's to choose,
 * and a link such as `/datasets/..%2F..%2Fv1%2Ftokens%23` must not turn the page's requests,
 * with their session cookie and CSRF token, towards another endpoint. A value that is a dot
 * segment ("." or "..", which `fetch` would resolve) names nothing, and is sent escaped. */
export function apiPath(strings: TemplateStringsArray, ...values: (string | number)[]): string {
  let out = strings[0];
  values.forEach((v, i) => {
    const segment = encodeURIComponent(String(v));
    out += (segment === "." || segment === ".." ? segment.replace(/\./g, "%252E") : segment) + strings[i + 1];
  });
  return out;
}

export interface RequestOptions {
  method?: string;
  query?: Query;
  json?: unknown;
  body?: BodyInit;
  signal?: AbortSignal;
}

let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

/** The response of a request that succeeded; an ApiError otherwise (a 401 also runs the
 * unauthorized handler, which sends the page to sign-in). */
async function send(path: string, opts: RequestOptions): Promise<Response> {
  const method = opts.method ?? (opts.json !== undefined || opts.body !== undefined ? "POST" : "GET");
  const headers: Record<string, string> = { Accept: "application/json" };
  if (!SAFE.has(method)) {
    const csrf = readCookie("corral_csrf");
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  let body = opts.body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  }
  const res = await fetch(withQuery(path, opts.query), {
    method,
    headers,
    body,
    credentials: "same-origin",
    signal: opts.signal,
  });
  if (!res.ok) {
    const err = await toApiError(res);
    if (res.status === 401 && onUnauthorized && !path.startsWith("/api/v1/sessions")) onUnauthorized();
    throw err;
  }
  return res;
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await send(path, opts);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** A binary answer (the map's points), with the same errors and sign-in redirect as `request`. */
export async function requestBytes(path: string, opts: RequestOptions = {}): Promise<ArrayBuffer> {
  return (await send(path, opts)).arrayBuffer();
}

export const api = {
  get: <T>(path: string, query?: Query, signal?: AbortSignal) => request<T>(path, { query, signal }),
  post: <T>(path: string, json?: unknown, query?: Query) =>
    request<T>(path, { method: "POST", json: json ?? {}, query }),
  put: <T>(path: string, json: unknown, query?: Query) => request<T>(path, { method: "PUT", json, query }),
  patch: <T>(path: string, json: unknown) => request<T>(path, { method: "PATCH", json }),
  del: <T>(path: string, query?: Query) => request<T>(path, { method: "DELETE", query }),
};

export function errorMessage(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

// -- types of the API's answers (the fields the UI reads) -------------------------------

export interface Me {
  user_id: string;
  email: string;
  role: string;
  org_id: string;
  org_name: string;
  auth_method: string;
}

export interface SessionInfo {
  id: string;
  method: string;
  user_agent: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  current: boolean;
}

export interface Integration {
  id: string;
  title: string;
  provider: string;
  scope: string;
  config: Record<string, unknown>;
  signed_url_ttl_seconds: number;
  strict_client_only: boolean;
  has_credentials: boolean;
  created_at: string;
}

export interface CheckStep {
  name: string;
  status: string;
  message: string;
  hint: string | null;
}

export interface CheckReport {
  ok: boolean;
  integration: string;
  provider: string;
  scope: string;
  origin: string;
  steps: CheckStep[];
}

export interface CorsRule {
  allowed_origins: string[];
  allowed_methods: string[];
  allowed_headers: string[];
  exposed_headers: string[];
  max_age_seconds: number;
}

export interface CorsState {
  origin: string;
  allows_origin: boolean;
  changed: boolean;
  rules: CorsRule[];
}

export interface Folder {
  id: string;
  name: string;
  path: string;
  parent_id: string | null;
  description: string;
  items: number;
  role: string;
  kind?: "generic" | "cloud_linked";
  integration_id?: string | null;
  remote_url?: string | null;
  last_synced_at?: string | null;
}

/** A cloud-synced folder's sync (``GET /api/v1/folders/{id}/syncs/{job}``). */
export interface SyncState {
  job_id: string;
  status: "pending" | "done" | "error" | "cancelled";
  error: string | null;
  counts: Record<string, number>;
  files_pending: number;
  files_done: number;
  files_failed: number;
}

export interface Part {
  position: number;
  url: string;
  title: string;
  media: Record<string, unknown>;
  signed_url: string | null;
}

export interface Item {
  id: string;
  name: string;
  type: string;
  folder_id: string;
  integration_id: string | null;
  url: string | null;
  storage_location: string;
  file_size: number | null;
  mime_type: string | null;
  media: Record<string, unknown>;
  client_metadata: Record<string, unknown>;
  created_at: string;
  parts: Part[] | null;
  signed_url: string | null;
  /** Set while the item is a tombstone: its object is gone from a cloud-synced folder's bucket. */
  tombstoned_at: string | null;
}

export interface ItemWindow {
  total: number;
  offset: number;
  items: Item[];
}
