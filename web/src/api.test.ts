import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, apiPath, readCookie, request, requestBytes, setUnauthorizedHandler, withQuery } from "./api";

afterEach(() => {
  vi.unstubAllGlobals();
  document.cookie = "corral_csrf=; expires=Thu, 01 Jan 1970 00:00:00 GMT";
});

describe("readCookie", () => {
  it("finds a cookie among several and decodes it", () => {
    expect(readCookie("corral_csrf", "a=1; corral_csrf=x%2By; b=2")).toBe("x+y");
    expect(readCookie("missing", "a=1")).toBeNull();
  });
});

describe("apiPath", () => {
  it("keeps a value from the address inside its one segment", () => {
    const id = "../../v1/tokens#";
    expect(apiPath`/api/v1/datasets/${id}/link`).toBe("/api/v1/datasets/..%2F..%2Fv1%2Ftokens%23/link");
    expect(new URL(apiPath`/api/v1/imports/${"x?wait=1"}/cancel`, "http://h").pathname).toBe("/api/v1/imports/x%3Fwait%3D1/cancel");
    for (const dots of [".", ".."]) {
      expect(new URL(apiPath`/api/v1/items/${dots}/restore`, "http://h").pathname).toMatch(/^\/api\/v1\/items\/[^/]+\/restore$/);
    }
    expect(apiPath`/api/v1/projects/${"0193-ab"}/label-rows/${42}`).toBe("/api/v1/projects/0193-ab/label-rows/42");
  });
});

describe("withQuery", () => {
  it("drops empty values and repeats lists", () => {
    expect(withQuery("/x", { a: 1, b: "", c: undefined, t: ["image", "video"] })).toBe("/x?a=1&t=image&t=video");
    expect(withQuery("/x", {})).toBe("/x");
  });
});

describe("request", () => {
  it("sends the CSRF cookie's value on a state-changing request only", async () => {
    document.cookie = "corral_csrf=tok123";
    const seen: Record<string, string>[] = [];
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      seen.push(init.headers as Record<string, string>);
      return new Response(JSON.stringify({ ok: true }), { status: 200 });
    });
    await request("/api/v1/me");
    await request("/api/v1/datasets", { method: "POST", json: { title: "t" } });
    expect(seen[0]["X-CSRF-Token"]).toBeUndefined();
    expect(seen[1]["X-CSRF-Token"]).toBe("tok123");
    expect(seen[1]["Content-Type"]).toBe("application/json");
  });

  it("raises the API's own message, code and field errors", async () => {
    vi.stubGlobal("fetch", async () =>
      new Response(
        JSON.stringify({ ok: false, status: 400, code: "validation_failed", message: "bad title", errors: [{ message: "required", field: "title" }] }),
        { status: 400 },
      ),
    );
    const err = await request("/api/v1/datasets", { method: "POST", json: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).message).toBe("bad title");
    expect((err as ApiError).code).toBe("validation_failed");
    expect((err as ApiError).errors[0].field).toBe("title");
  });

  it("names the status when the answer is not corral's error shape", async () => {
    vi.stubGlobal("fetch", async () => new Response("<html>", { status: 502, statusText: "Bad Gateway" }));
    const err = await request("/api/v1/me").catch((e: unknown) => e);
    expect((err as ApiError).message).toContain("502");
  });
});

describe("requestBytes", () => {
  afterEach(() => setUnauthorizedHandler(null));

  it("gives the body's bytes, and on a 401 the API's error and the sign-in handler, like request", async () => {
    let signIn = 0;
    setUnauthorizedHandler(() => { signIn += 1; });
    vi.stubGlobal("fetch", async (url: string) =>
      url.includes("gone")
        ? new Response(JSON.stringify({ ok: false, status: 401, code: "unauthenticated", message: "session ended", errors: [] }), { status: 401 })
        : new Response(new Uint8Array([1, 2, 3]), { status: 200 }),
    );
    expect(new Uint8Array(await requestBytes("/api/v1/index/map/clip/points", { query: { color: "camera" } }))).toEqual(new Uint8Array([1, 2, 3]));
    expect(signIn).toBe(0);
    const err = await requestBytes("/api/v1/index/map/gone/points").catch((e: unknown) => e);
    expect((err as ApiError).message).toBe("session ended");
    expect(signIn).toBe(1);
  });
});
