// The explorer's 2-D embedding map: the points of an embedding key's map (one binary request),
// drawn with WebGL2, coloured by a metadata key; wheel to zoom, drag to pan, and a lasso (the
// Lasso tool, or shift-drag) that becomes an `in_map` filter clause for the grid and the facets.

import { useCallback, useEffect, useMemo, useRef, useState, type PointerEvent as ReactPointerEvent } from "react";
import { ApiError, api, requestBytes } from "../../api";
import { ErrorBanner } from "../../components/ui";
import type { SchemaDoc } from "../schemaOps";
import { categoryLabel, decodePoints, fitView, lassoClause, palette, selectMask, simplify, toGrid, toScreen, zoomAt, type MapPoints, type Vertex, type View } from "./mapModel";

interface MapStatus {
  key: string;
  vectors: number;
  unmapped: number;
  map: { method: string; points: number; built_at: string | null } | null;
  job: { id: string; status: string; result: { phase?: string; vectors_done?: number; vectors_total?: number } } | null;
}

interface Props {
  schema: SchemaDoc | null;
  where: string; // the explorer's filter without the map's own clause
  area: string; // the current map clause ("" for none)
  onArea: (clause: string) => void;
}

export function MapView(props: Props) {
  const embeddings = useMemo(() => Object.entries(props.schema?.keys ?? {}).filter(([, d]) => d.type === "embedding" && !d.deleted).map(([n]) => n).sort(), [props.schema]);
  const colourKeys = useMemo(() => Object.entries(props.schema?.keys ?? {}).filter(([, d]) => ["enum", "boolean", "varchar", "uuid", "number", "datetime"].includes(d.type) && !d.deleted).map(([n]) => n).sort(), [props.schema]);
  const [key, setKey] = useState("");
  const [color, setColor] = useState("");
  const [status, setStatus] = useState<MapStatus | null>(null);
  const [points, setPoints] = useState<MapPoints | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [building, setBuilding] = useState<string | null>(null);
  const [tool, setTool] = useState<"pan" | "lasso">("pan");
  const [polygon, setPolygon] = useState<Vertex[] | null>(null);
  useEffect(() => { if (!key && embeddings.length) setKey(embeddings[0]); }, [embeddings, key]);

  const loadStatus = useCallback(() => {
    if (!key) return;
    api.get<MapStatus>(`/api/v1/index/map/${encodeURIComponent(key)}`).then(setStatus, setError);
  }, [key]);
  useEffect(loadStatus, [loadStatus]);

  useEffect(() => {
    if (!key || !status?.map) { setPoints(null); return; }
    const ctl = new AbortController();
    setError(null);
    const started = performance.now();
    requestBytes(`/api/v1/index/map/${encodeURIComponent(key)}/points`, { query: { color: color || undefined, where: props.where || undefined }, signal: ctl.signal })
      .then((buf) => { const p = decodePoints(buf); (p as MapPoints & { fetchMs?: number }).fetchMs = performance.now() - started; setPoints(p); })
      .catch((e) => { if (!ctl.signal.aborted) setError(e); });
    return () => ctl.abort();
  }, [key, color, props.where, status?.map, status?.map?.built_at]);

  const build = async () => {
    setError(null);
    try {
      const r = await api.post<{ job_id: string }>(`/api/v1/index/map/${encodeURIComponent(key)}/build`, { method: "auto" });
      setBuilding(r.job_id);
      for (;;) {
        const j = await api.get<{ status: string; error: string | null; result: Record<string, number | string> }>(`/api/v1/jobs/${r.job_id}`, { wait: 5 });
        if (j.status !== "PENDING") {
          if (j.status !== "DONE") setError(new ApiError(500, "job_failed", j.error ?? `the build ended ${j.status}`, []));
          break;
        }
        setStatus((s) => (s ? { ...s, job: { id: r.job_id, status: j.status, result: j.result } } : s));
      }
    } catch (e) {
      setError(e);
    } finally {
      setBuilding(null);
      loadStatus();
    }
  };

  const clear = () => { setPolygon(null); props.onArea(""); };
  const job = status?.job && status.job.status === "PENDING" ? status.job : null;

  return (
    <section className="map-view" aria-label="Embedding map">
      <div className="toolbar">
        <label className="field-inline">Embedding
          <select value={key} onChange={(e) => { setKey(e.target.value); clear(); }} aria-label="Embedding key" disabled={!embeddings.length}>
            {embeddings.length === 0 && <option value="">no embedding key</option>}
            {embeddings.map((k) => <option key={k} value={k}>{k}</option>)}
          </select>
        </label>
        <label className="field-inline">Colour by
          <select value={color} onChange={(e) => setColor(e.target.value)} aria-label="Colour by">
            <option value="">nothing</option>
            <option value="@type">item type</option>
            {colourKeys.map((k) => <option key={k} value={k}>{k}</option>)}
          </select>
        </label>
        <div role="group" aria-label="Map tool" className="row">
          <button aria-pressed={tool === "pan"} onClick={() => setTool("pan")}>Pan</button>
          <button aria-pressed={tool === "lasso"} onClick={() => setTool("lasso")}>Lasso</button>
        </div>
        <button onClick={clear} disabled={!props.area}>Clear selection</button>
        <button onClick={build} disabled={!key || building !== null || job !== null}>
          {status?.map ? (status.unmapped ? `Map ${status.unmapped.toLocaleString()} new` : "Rebuild map") : "Build map"}
        </button>
        <span className="hint" aria-live="polite" data-testid="map-status">{describe(status, points, building ?? job?.id ?? null)}</span>
      </div>
      <ErrorBanner error={error} />
      {points && (
        <Canvas points={points} polygon={polygon} tool={tool}
          onLasso={(poly) => { setPolygon(poly); afterPaint(() => props.onArea(poly ? lassoClause(key, poly) : "")); }} />
      )}
      {points && points.header.categories.length > 0 && (
        <ul className="map-legend" aria-label="Colours">
          {points.header.categories.slice(0, 24).map((c, i) => (
            <li key={i}><span className="swatch" style={{ background: rgb(i + 1) }} />{categoryLabel(c)} <span className="hint">{c.count.toLocaleString()}</span></li>
          ))}
          {points.header.other > 0 && <li><span className="swatch" style={{ background: rgb(255) }} />other <span className="hint">{points.header.other.toLocaleString()}</span></li>}
        </ul>
      )}
    </section>
  );
}

const PALETTE = palette();
const rgb = (code: number) => `rgb(${[0, 1, 2].map((k) => Math.round(PALETTE[code * 3 + k] * 255)).join(",")})`;

/** Run `f` once the next frame has been painted: the lasso's highlight is drawn first, and only
 * then does the explorer re-render and send the grid's and the facets' queries (which at a million
 * points keep the server's cores busy, and React's render of the explorer the page's thread). */
function afterPaint(f: () => void) {
  requestAnimationFrame(() => setTimeout(f, 0));
}

function describe(status: MapStatus | null, points: MapPoints | null, job: string | null): string {
  if (job) {
    const r = status?.job?.result ?? {};
    return r.phase ? `Building: ${r.phase} ${(r.vectors_done ?? 0).toLocaleString()} / ${(r.vectors_total ?? 0).toLocaleString()}` : "Building…";
  }
  if (!status) return "";
  if (!status.map) return status.vectors ? `No map yet: ${status.vectors.toLocaleString()} vectors to map.` : "No vectors of this key yet.";
  const shown = points ? `${points.n.toLocaleString()} points shown` : "loading…";
  return `${shown} (${status.map.method.toUpperCase()})${status.unmapped ? `; ${status.unmapped.toLocaleString()} not yet mapped` : ""}`;
}

// -- the WebGL2 canvas -----------------------------------------------------------------------------

const VERT = `#version 300 es
in vec2 a_pos; in float a_code;
uniform vec3 u_view; uniform vec2 u_size; uniform float u_point;
uniform sampler2D u_pal;
out vec4 v_color;
void main() {
  vec2 s = a_pos * u_view.x + u_view.yz;
  gl_Position = vec4(s.x / u_size.x * 2.0 - 1.0, 1.0 - s.y / u_size.y * 2.0, 0.0, 1.0);
  v_color = vec4(texelFetch(u_pal, ivec2(int(a_code), 0), 0).rgb, 0.95);
  gl_PointSize = u_point + 1.0;
}`;
const FRAG = `#version 300 es
precision mediump float;
in vec4 v_color; out vec4 o;
void main() { o = v_color; }`;

interface GlState {
  gl: WebGL2RenderingContext;
  prog: WebGLProgram;
  n: number;
}

function setup(canvas: HTMLCanvasElement, points: MapPoints): GlState {
  const gl = canvas.getContext("webgl2", { antialias: false, preserveDrawingBuffer: true });
  if (!gl) throw new Error("this browser has no WebGL2");
  const shader = (type: number, src: string) => {
    const s = gl.createShader(type)!;
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s) ?? "shader");
    return s;
  };
  const prog = gl.createProgram()!;
  gl.attachShader(prog, shader(gl.VERTEX_SHADER, VERT));
  gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, FRAG));
  gl.linkProgram(prog);
  gl.useProgram(prog);
  const attr = (name: string, data: ArrayBufferView, size: number, type: number) => {
    const buf = gl.createBuffer()!;
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    const loc = gl.getAttribLocation(prog, name);
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, size, type, false, 0, 0);
    return buf;
  };
  const xy = new Uint16Array(points.n * 2);
  for (let i = 0; i < points.n; i++) { xy[2 * i] = points.x[i]; xy[2 * i + 1] = points.y[i]; }
  attr("a_pos", xy, 2, gl.UNSIGNED_SHORT);
  attr("a_code", points.codes, 1, gl.UNSIGNED_BYTE);
  const tex = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, tex);
  const bytes = new Uint8Array(256 * 4);
  for (let c = 0; c < 256; c++) { for (let k = 0; k < 3; k++) bytes[c * 4 + k] = Math.round(PALETTE[c * 3 + k] * 255); bytes[c * 4 + 3] = 255; }
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 256, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, bytes);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  gl.enable(gl.BLEND);
  gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
  return { gl, prog, n: points.n };
}

// The scene is every point, drawn only when the points, the view or the size change: at a million
// points it is ~0.5-0.8 s of SwiftShader's rasterising in the GPU process (Chromium's `finish()`
// does not wait for it; the next compositor commit does, blocking the page's thread). A lasso's
// selection is therefore drawn on the 2-D overlay (outside the polygon washed out), never by
// redrawing the points: the highlight is then a frame without that commit.
function draw(st: GlState, view: View, width: number, height: number): void {
  const { gl, prog } = st;
  const dpr = window.devicePixelRatio || 1;
  gl.viewport(0, 0, width * dpr, height * dpr);
  gl.clearColor(1, 1, 1, 1);
  gl.clear(gl.COLOR_BUFFER_BIT);
  gl.uniform3f(gl.getUniformLocation(prog, "u_view"), view.scale, view.tx, view.ty);
  gl.uniform2f(gl.getUniformLocation(prog, "u_size"), width, height);
  gl.uniform1f(gl.getUniformLocation(prog, "u_point"), Math.max(1.5, Math.min(6, 2 + Math.log2(1 + st.n ** -0.5 * view.scale * 65535 / 8))) * dpr);
  gl.drawArrays(gl.POINTS, 0, st.n);
}

function Canvas(props: { points: MapPoints; polygon: Vertex[] | null; tool: "pan" | "lasso"; onLasso: (p: Vertex[] | null) => void }) {
  const { points, polygon } = props;
  const canvas = useRef<HTMLCanvasElement>(null);
  const overlay = useRef<HTMLCanvasElement>(null);
  const gl = useRef<GlState | null>(null);
  const draws = useRef(0); // scene draws so far (`data-draws`: a lasso must not add one)
  const [size, setSize] = useState({ w: 600, h: 420 });
  const [view, setView] = useState<View>(() => fitView(600, 420));
  const [glError, setGlError] = useState<string | null>(null);
  const drag = useRef<{ mode: "pan" | "lasso"; x: number; y: number; view: View; path: Vertex[] } | null>(null);

  useEffect(() => {
    const el = canvas.current?.parentElement;
    if (!el) return;
    const measure = () => { const w = el.clientWidth, h = el.clientHeight; setSize({ w, h }); setView(fitView(w, h)); };
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    if (!canvas.current) return;
    try { gl.current = setup(canvas.current, points); setGlError(null); } catch (e) { setGlError(String(e)); }
  }, [points]);

  useEffect(() => {
    const st = gl.current;
    if (!st) return;
    const started = performance.now();
    draw(st, view, size.w, size.h);
    st.gl.finish(); // a flush in Chromium: the time below is the submission, not the raster
    canvas.current?.setAttribute("data-drawn", String(points.n));
    canvas.current?.setAttribute("data-draw-ms", (performance.now() - started).toFixed(1));
    canvas.current?.setAttribute("data-draws", String(++draws.current));
  }, [points, view, size]);

  // The selection: the points inside the lasso (the even-odd rule over the typed arrays), counted
  // for `data-selected`; the highlight itself is the overlay's (below), the same rule in pixels.
  useEffect(() => {
    if (!polygon) { canvas.current?.removeAttribute("data-selected"); return; }
    const started = performance.now();
    const mask = selectMask(points, polygon);
    let k = 0;
    for (let i = 0; i < mask.length; i++) k += mask[i];
    canvas.current?.setAttribute("data-select-ms", (performance.now() - started).toFixed(1));
    canvas.current?.setAttribute("data-selected", String(k));
  }, [points, polygon]);

  const local = (e: ReactPointerEvent): Vertex => {
    const r = e.currentTarget.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  // The lasso on the overlay: while drawing, its path; once drawn (`selected`), everything outside
  // it washed towards white, so the points inside stand out without redrawing the scene.
  const trace = (path: Vertex[], selected: boolean) => {
    const ctx = overlay.current?.getContext("2d");
    if (!ctx) return;
    ctx.clearRect(0, 0, size.w, size.h);
    if (path.length < 2) return;
    ctx.beginPath();
    if (selected) ctx.rect(0, 0, size.w, size.h);
    ctx.moveTo(path[0][0], path[0][1]);
    for (const [x, y] of path.slice(1)) ctx.lineTo(x, y);
    ctx.closePath();
    ctx.fillStyle = selected ? "rgba(255, 255, 255, 0.62)" : "rgba(37, 99, 235, 0.08)";
    ctx.fill("evenodd");
    ctx.beginPath();
    ctx.moveTo(path[0][0], path[0][1]);
    for (const [x, y] of path.slice(1)) ctx.lineTo(x, y);
    ctx.closePath();
    ctx.strokeStyle = "rgb(37, 99, 235)";
    ctx.lineWidth = 1.5;
    ctx.stroke();
  };
  useEffect(() => {
    trace(polygon ? polygon.map(([x, y]) => toScreen(view, x, y)) : [], true);
    if (polygon) performance.mark("map-lasso-drawn");
  }, [points, polygon, view, size]); // eslint-disable-line react-hooks/exhaustive-deps

  const down = (e: ReactPointerEvent<HTMLCanvasElement>) => {
    const [x, y] = local(e);
    e.currentTarget.setPointerCapture(e.pointerId);
    drag.current = { mode: e.shiftKey || props.tool === "lasso" ? "lasso" : "pan", x, y, view, path: [[x, y]] };
  };
  const move = (e: ReactPointerEvent<HTMLCanvasElement>) => {
    const d = drag.current;
    if (!d) return;
    const [x, y] = local(e);
    if (d.mode === "pan") setView({ ...d.view, tx: d.view.tx + x - d.x, ty: d.view.ty + y - d.y });
    else { d.path.push([x, y]); trace(d.path, false); }
  };
  const up = () => {
    const d = drag.current;
    drag.current = null;
    if (!d || d.mode !== "lasso") return;
    performance.mark("map-lasso-up");
    const poly = simplify(d.path.map(([x, y]) => toGrid(view, x, y)));
    props.onLasso(poly.length >= 3 ? poly : null);
  };
  const wheel = (e: React.WheelEvent<HTMLCanvasElement>) => {
    const r = e.currentTarget.getBoundingClientRect();
    setView(zoomAt(view, e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * 0.0015)));
  };
  const dpr = typeof window === "undefined" ? 1 : window.devicePixelRatio || 1;
  return (
    <div className="map-canvas" style={{ position: "relative", height: 420 }}>
      {glError && <div className="alert error" role="alert">{glError}</div>}
      <canvas ref={canvas} width={size.w * dpr} height={size.h * dpr} style={{ width: size.w, height: size.h, cursor: props.tool === "lasso" ? "crosshair" : "grab", touchAction: "none" }}
        aria-label="Embedding map: drag to pan, wheel to zoom, Lasso tool or shift-drag to select" role="img"
        data-view={JSON.stringify(view)} onPointerDown={down} onPointerMove={move} onPointerUp={up} onWheel={wheel} />
      <canvas ref={overlay} width={size.w} height={size.h} style={{ position: "absolute", left: 0, top: 0, width: size.w, height: size.h, pointerEvents: "none" }} aria-hidden="true" />
    </div>
  );
}
