// The Index explorer: a filter sidebar built from the metadata schema with facet counts, a text
// box for the index's syntax, sorting by any key, and the matching items in the virtual grid,
// read a keyset page at a time (POST /api/v1/index/query and /facets; docs/index.md).
// The results can be linked into a dataset. Everything goes through the public REST API.

import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent as ReactKeyboardEvent, type ReactNode } from "react";
import { useLocation, useNavigationType, useSearchParams } from "react-router-dom";
import { ApiError, api, request } from "../api";
import { Confirm, Dialog, ErrorBanner } from "../components/ui";
import { ItemViewer } from "./ItemViewer";
import { SimilarPanel, hasEmbeddings } from "./Similar";
import type { SimilarSource } from "./similarModel";
import { Tile, useStrictIntegrations, type TileItem } from "./Files";
import { layout, scrollTopFor } from "./virtualRows";
import { nextIndex } from "./windowCache";
import type { SchemaDoc } from "./schemaOps";
import {
  compose, control, facetPlan, filterKeys, isEmpty, parseSelection, presetQuery, selectionParam, setMatch, setRange, sidebarText, sortChoices, sortParam, toggle, typedPosition, valueRows,
  type Bucket, type Facet, type FilterKey, type KeyKind, type Range, type Selection, type Value,
} from "./filterModel";
import { MapView } from "./explore/MapView";
import { typedWithArea, withArea } from "./explore/mapModel";

const TILE_W = 168;
const ROW_H = 178;
const PAGE = 200;
const FIELDS = ["id", "title", "type", "size", "folder_id", "tombstoned_at"];

interface IndexItem {
  id: string;
  title: string;
  type: string;
  size: number | null;
  folder_id: string;
  tombstoned_at?: string | null;
}

interface QueryPage {
  items: IndexItem[];
  next_page_token: string | null;
  count: number | null;
}

/** An error about the composed filter, its position moved back onto what the user typed. */
function onTyped(e: unknown, offset: number): unknown {
  if (!(e instanceof ApiError) || offset === 0) return e;
  return new ApiError(e.status, e.code, typedPosition(e.message, offset), e.errors.map((x) => ({ ...x, message: typedPosition(x.message, offset) })));
}

const asTile = (it: IndexItem): TileItem => ({ id: it.id, name: it.title, type: it.type, file_size: it.size, integration_id: null, signed_url: null, tombstoned_at: it.tombstoned_at ?? null });

/** What the explorer keeps in its address: each parameter's text, or null when absent. */
type Address = Record<"f" | "q" | "sort" | "item", string | null>;

function readAddress(p: URLSearchParams): Address {
  return { f: p.get("f"), q: p.get("q"), sort: p.get("sort"), item: p.get("item") };
}

function addressParams(a: Address): URLSearchParams {
  const p = new URLSearchParams();
  for (const k of ["q", "f", "sort", "item"] as const) {
    const v = a[k];
    if (v !== null && v !== "") p.set(k, v);
  }
  return p;
}

export function Explore() {
  const [schema, setSchema] = useState<SchemaDoc | null>(null);
  const [schemaError, setSchemaError] = useState<unknown>(null);
  // The filter, the sort and the open item live in the page's address (?q=, ?f=, ?sort=,
  // ?item=), so a reload, a shared link and the browser's back and forward keep them.  The page
  // reads them from its own state, set at once, and writes the address after it: react-router
  // applies a navigation in a transition, later than the next click or keystroke, so controls
  // that read the address itself saw the choice before last (a range's "from" wiped its "to").
  const [search, setSearch] = useSearchParams();
  const location = useLocation();
  const navigation = useNavigationType();
  const [addr, setAddr] = useState<Address>(() => readAddress(search));
  const latest = useRef(addr);
  const written = useRef(new Set<string>());
  useEffect(() => {
    // Back and forward, or a link to this page followed from it: the address is the truth.  The
    // page's own writes come back here too, later, and are not read back.
    const now = new URLSearchParams(location.search);
    if (navigation !== "POP" && written.current.has(now.toString())) return;
    written.current.clear();
    latest.current = readAddress(now);
    setAddr(latest.current);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [location.key]);
  const update = useCallback((changes: Partial<Address>, replace = false) => {
    const next = { ...latest.current, ...changes };
    latest.current = next;
    setAddr(next);
    const params = addressParams(next);
    written.current.add(params.toString());
    setSearch(params, { replace });
  }, [setSearch]);
  const selRaw = addr.f;
  const sel = useMemo(() => parseSelection(selRaw), [selRaw]);
  const setSel = (s: Selection) => update({ f: selectionParam(s) });
  const typed = addr.q ?? "";
  const [draft, setDraft] = useState(typed);
  useEffect(() => setDraft(typed), [typed]);
  const sortRaw = addr.sort ?? "";
  const desc = sortRaw.startsWith("-");
  const sortBy = desc ? sortRaw.slice(1) : sortRaw;
  const itemId = addr.item;
  const setItemId = (id: string | null) => update({ item: id }, true);
  const [refresh, setRefresh] = useState(0); // bumped after an item changes, to read the results again
  const [dialog, setDialog] = useState<null | "dataset" | "preset" | "collection">(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [presets, setPresets] = useState<Preset[] | null>(null);
  const [collections, setCollections] = useState<Collection[] | null>(null);
  const [savedError, setSavedError] = useState<unknown>(null);
  const [dropping, setDropping] = useState<Preset | null>(null);
  const [similar, setSimilar] = useState<{ source: SimilarSource | null } | null>(null);
  const loadSaved = useCallback(() => {
    api.get<{ presets: Preset[] }>("/api/v1/index/presets", { page_size: 1000 }).then((r) => setPresets(r.presets), setSavedError);
    api.get<{ collections: Collection[] }>("/api/v1/index/collections", { page_size: 1000 }).then((r) => setCollections(r.collections), setSavedError);
  }, []);
  useEffect(loadSaved, [loadSaved]);

  useEffect(() => {
    api.get<{ schema: SchemaDoc }>("/api/v1/metadata-schema").then((r) => setSchema(r.schema), setSchemaError);
  }, []);
  const keys = useMemo(() => filterKeys(schema), [schema]);
  const kinds = useMemo<Record<string, KeyKind>>(() => Object.fromEntries(keys.map((k) => [k.name, k.kind])), [keys]);
  const [area, setArea] = useState(""); // the map's lasso, an in_map clause
  const [showMap, setShowMap] = useState(false);
  const unmapped = useMemo(() => compose(typed, sidebarText(sel, kinds)), [typed, sel, kinds]);
  const composed = useMemo(() => withArea(unmapped, area), [unmapped, area]);
  const sort = sortParam(sortBy, desc);

  // The results: the first page with the exact count, then keyset pages as the grid needs them.
  const [items, setItems] = useState<IndexItem[]>([]);
  const [count, setCount] = useState<number | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [queryError, setQueryError] = useState<unknown>(null);
  const loading = useRef<AbortController | null>(null);
  const generation = useRef(0);

  useEffect(() => {
    if (schema === null && schemaError === null) return;
    const gen = ++generation.current;
    loading.current?.abort();
    const ctl = new AbortController();
    loading.current = ctl;
    setItems([]);
    setCount(null);
    setNext(null);
    setQueryError(null);
    const body = { where: composed.where || undefined, sort, page_size: PAGE, count: true, fields: FIELDS };
    post<QueryPage>("/api/v1/index/query", body, ctl.signal).then(
      (p) => { if (gen !== generation.current) return; setItems(p.items); setNext(p.next_page_token); setCount(p.count ?? p.items.length); },
      (e) => { if (!ctl.signal.aborted) setQueryError(onTyped(e, composed.offset)); },
    ).finally(() => { if (loading.current === ctl) loading.current = null; });
    return () => ctl.abort();
  }, [composed, sort, schema, schemaError, refresh]);

  const loadMore = useCallback((want: number) => {
    if (!next || loading.current) return;
    const gen = generation.current;
    const ctl = new AbortController();
    loading.current = ctl;
    const body = { where: composed.where || undefined, sort, page_size: Math.min(1000, Math.max(PAGE, want)), page_token: next, fields: FIELDS };
    post<QueryPage>("/api/v1/index/query", body, ctl.signal).then(
      (p) => { if (gen !== generation.current) return; setItems((old) => [...old, ...p.items]); setNext(p.next_page_token); },
      (e) => { if (!ctl.signal.aborted) setQueryError(onTyped(e, composed.offset)); },
    ).finally(() => { if (loading.current === ctl) loading.current = null; });
  }, [next, composed, sort]);

  // Facet counts for the sidebar, under the current filter (a chosen key under the others).
  const [facets, setFacets] = useState<Record<string, Facet>>({});
  useEffect(() => {
    if (schema === null) return;
    const ctl = new AbortController();
    const plan = facetPlan(keys, sel, typedWithArea(typed, area));
    Promise.all(plan.map((r) => post<{ facets: Facet[] }>("/api/v1/index/facets", { where: r.where || undefined, keys: r.keys, top: 12, buckets: 12 }, ctl.signal)))
      .then((answers) => setFacets(Object.fromEntries(answers.flatMap((a) => a.facets).map((f) => [f.key, f]))), () => undefined); // the query shows any error
    return () => ctl.abort();
  }, [keys, sel, typed, area, schema]);

  const applyTyped = (e: FormEvent) => {
    e.preventDefault();
    update({ q: draft.trim() });
  };
  const applyPreset = (p: Preset) => {
    const q = presetQuery(p, presets ?? []);
    update({ f: null, q }); // a preset holds the whole filter it was saved with
    setDraft(q);
  };
  const done = (message: string) => { setNotice(message); setDialog(null); loadSaved(); };
  const typedError = queryError instanceof ApiError && queryError.status === 400 ? queryError : null;

  return (
    <div className={itemId ? "explore with-viewer" : "explore"}>
      <aside className="filters" aria-label="Filters">
        <div className="row" style={{ justifyContent: "space-between" }}>
          <h2 style={{ margin: 0 }}>Filters</h2>
          <button className="link" disabled={isEmpty(sel) && !typed} onClick={() => { update({ f: null, q: null }); setDraft(""); }}>Clear all</button>
        </div>
        <form className="query-box" onSubmit={applyTyped} role="search">
          <label htmlFor="where" className="field-label">Query</label>
          <textarea
            id="where"
            rows={2}
            spellCheck={false}
            placeholder={'camera = "cam1" and score > 0.5'}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={(e) => { if (e.key === "Enter" && !e.shiftKey) applyTyped(e); }}
            aria-invalid={typedError !== null}
            aria-describedby={typedError ? "where-error where-help" : "where-help"}
          />
          <div className="row" style={{ justifyContent: "space-between" }}>
            <span id="where-help" className="hint">The <a href="/api/docs" target="_blank" rel="noreferrer">index syntax</a>; and-ed with the choices below.</span>
            <button type="submit">Apply</button>
          </div>
          {typedError && <div className="alert error" role="alert" id="where-error" aria-label="Query error">{typedError.message}</div>}
        </form>
        {schemaError !== null && <ErrorBanner error={schemaError} />}
        {savedError !== null && <ErrorBanner error={savedError} />}
        <FacetGroup title="Presets">
          {presets === null ? <p className="hint">…</p> : presets.length === 0 ? <p className="hint">None yet: “Save as preset” keeps the current filter.</p> : (
            <ul className="presets" aria-label="Presets">
              {presets.map((p) => (
                <li key={p.id}>
                  <button type="button" className="link" onClick={() => applyPreset(p)} aria-label={`Apply preset ${p.name}`} title={p.description ?? undefined}>{p.name}</button>
                  <button type="button" className="icon" onClick={() => setDropping(p)} aria-label={`Delete preset ${p.name}`}>✕</button>
                </li>
              ))}
            </ul>
          )}
        </FacetGroup>
        <FacetGroup title="Item type">
          <Values name="@type" kind="varchar" facet={facets["@type"]} sel={sel} onChange={setSel} />
        </FacetGroup>
        {collections !== null && collections.length > 0 && (
          <FacetGroup title="Collection">
            <Values name="@collection" kind="varchar" sel={sel} onChange={setSel}
              facet={{ key: "@collection", kind: "collection", values: collections.map((c) => ({ value: c.id, count: c.items })) }}
              labels={Object.fromEntries(collections.map((c) => [c.id, c.name]))} />
          </FacetGroup>
        )}
        <FacetGroup title="Folder">
          <TextControl label="Folder and its subfolders (path)" value={sel.folder} placeholder="data/2024" onCommit={(v) => setSel({ ...sel, folder: v })} />
        </FacetGroup>
        <FacetGroup title="Size (bytes)">
          <RangeControl name="@size" kind="number" range={sel.ranges["@size"]} onCommit={(r) => setSel(setRange(sel, "@size", r))} />
        </FacetGroup>
        {keys.length === 0 && schema !== null && <p className="hint">The metadata schema has no queryable keys yet: add some on the Metadata schema page.</p>}
        {keys.map((k) => (
          <FacetGroup key={k.name} title={k.name} kind={k.kind}>
            <KeyControl k={k} facet={facets[k.name]} sel={sel} onChange={setSel} />
          </FacetGroup>
        ))}
      </aside>

      <section className="folder-view" aria-label="Results">
        <div className="toolbar">
          <span className="title">Explore</span>
          <span aria-live="polite" data-testid="result-count" style={{ color: "var(--muted)" }}>{count === null ? "" : `${count.toLocaleString()} item${count === 1 ? "" : "s"}`}</span>
          <label className="sr-only" htmlFor="sort-by">Sort by</label>
          <select id="sort-by" value={sortBy} onChange={(e) => update({ sort: sortParam(e.target.value, desc) ?? null })} style={{ width: "auto" }}>
            <option value="">Date added (default)</option>
            {sortChoices(keys).map((c) => <option key={c.value} value={c.value}>{c.label}</option>)}
          </select>
          <button onClick={() => update({ sort: sortParam(sortBy, !desc) ?? null })} aria-pressed={desc} aria-label={desc ? "Descending; sort ascending" : "Ascending; sort descending"} disabled={!sortBy}>
            {desc ? "↓ Desc" : "↑ Asc"}
          </button>
          <button aria-pressed={showMap} onClick={() => setShowMap(!showMap)}>Map</button>
          <button onClick={() => { setNotice(null); setDialog("preset"); }}>Save as preset…</button>
          <button disabled={!count} onClick={() => { setNotice(null); setDialog("collection"); }}>Add to collection…</button>
          <button className="primary" disabled={!count} onClick={() => { setNotice(null); setDialog("dataset"); }}>Add to dataset…</button>
          {hasEmbeddings(schema) && <button onClick={() => setSimilar({ source: null })} aria-pressed={similar !== null}>Similar…</button>}
        </div>
        {similar && <SimilarPanel schema={schema} where={composed.where} source={similar.source} onOpen={setItemId} onClose={() => setSimilar(null)} />}
        {notice && <div className="alert ok" role="status" style={{ margin: "8px 16px 0" }}>{notice}</div>}
        {queryError !== null && typedError === null && <div style={{ margin: "8px 16px 0" }}><ErrorBanner error={queryError} /></div>}
        {showMap && <MapView schema={schema} where={unmapped.where} area={area} onArea={setArea} />}
        <Results items={items} count={count} more={next !== null} loadMore={loadMore} selectedId={itemId} onSelect={setItemId} />
      </section>

      {itemId && <ItemViewer itemId={itemId} onClose={() => setItemId(null)} onChanged={() => setRefresh((n) => n + 1)}
        onFindSimilar={(it, vectors) => setSimilar({ source: { item: it.id, title: it.name, keys: vectors } })} />}
      {dialog === "dataset" && count !== null && (
        <LinkToDataset where={composed.where} count={count} onClose={() => setDialog(null)} onDone={done} />
      )}
      {dialog === "preset" && <SavePreset where={composed.where} onClose={() => setDialog(null)} onDone={done} />}
      {dialog === "collection" && count !== null && (
        <AddToCollection where={composed.where} count={count} collections={collections ?? []} onClose={() => setDialog(null)} onDone={done} />
      )}
      {dropping && (
        <Confirm title={`Delete preset “${dropping.name}”?`} message="The preset goes; no item changes." confirmLabel="Delete preset"
          onConfirm={async () => { await api.del(`/api/v1/index/presets/${dropping.id}`); loadSaved(); }} onClose={() => setDropping(null)} />
      )}
    </div>
  );
}

function post<T>(path: string, json: unknown, signal: AbortSignal): Promise<T> {
  return request<T>(path, { method: "POST", json, signal });
}

// -- the sidebar ---------------------------------------------------------------------------------

function FacetGroup(props: { title: string; kind?: string; children: ReactNode }) {
  return (
    <fieldset className="facet">
      <legend>{props.title}{props.kind && <span className="kind">{props.kind}</span>}</legend>
      {props.children}
    </fieldset>
  );
}

function KeyControl(props: { k: FilterKey; facet: Facet | undefined; sel: Selection; onChange: (s: Selection) => void }) {
  const { k, sel, onChange } = props;
  switch (control(k.kind)) {
    case "values":
      return <Values name={k.name} kind={k.kind} facet={props.facet} sel={sel} onChange={onChange} options={k.kind === "boolean" ? ["true", "false"] : k.options} />;
    case "range":
      return (
        <>
          <Histogram name={k.name} facet={props.facet} onPick={(b) => onChange(setRange(sel, k.name, { min: String(b.from), max: String(b.to) }))} />
          <RangeControl name={k.name} kind={k.kind} range={sel.ranges[k.name]} onCommit={(r) => onChange(setRange(sel, k.name, r))} />
        </>
      );
    case "match":
      return <TextControl label={`Words in ${k.name}`} value={sel.match[k.name] ?? ""} placeholder="every word, any order" onCommit={(v) => onChange(setMatch(sel, k.name, v))} />;
  }
}

function Values(props: { name: string; kind: KeyKind; facet: Facet | undefined; sel: Selection; onChange: (s: Selection) => void; options?: string[]; labels?: Record<string, string> }) {
  const chosen = props.sel.values[props.name] ?? [];
  const asValue = (v: Value | number): Value => (props.kind === "boolean" ? v === true || v === "true" : String(v));
  const rows = valueRows(props.facet, chosen, props.options).map((r) => ({ value: asValue(r.value), count: r.count }));
  const merged = rows.filter((r, i) => rows.findIndex((x) => x.value === r.value) === i);
  if (merged.length === 0) return <p className="hint">{props.facet ? "No values under this filter." : "…"}</p>;
  return (
    <ul className="values" aria-label={`${props.name} values`}>
      {merged.map((r) => {
        const label = props.labels?.[String(r.value)] ?? String(r.value);
        return (
          <li key={String(r.value)}>
            <label>
              <input type="checkbox" checked={chosen.includes(r.value)} onChange={() => props.onChange(toggle(props.sel, props.name, r.value))} />
              <span className="value">{label === "" ? "(empty)" : label.replace("_", " ")}</span>
              <span className="count">{r.count.toLocaleString()}</span>
            </label>
          </li>
        );
      })}
    </ul>
  );
}

function Histogram(props: { name: string; facet: Facet | undefined; onPick: (b: Bucket) => void }) {
  const buckets = props.facet?.buckets ?? [];
  if (!props.facet) return null;
  if (buckets.length === 0) return <p className="hint">No values under this filter.</p>;
  const top = Math.max(1, ...buckets.map((b) => b.count));
  const show = (v: string | number) => (typeof v === "number" ? Number(v.toPrecision(4)).toLocaleString() : v.slice(0, 10));
  return (
    <div className="histogram" role="group" aria-label={`${props.name} histogram`}>
      {buckets.map((b, i) => (
        <button key={i} type="button" className="bar" disabled={b.count === 0} title={`${show(b.from)} – ${show(b.to)}: ${b.count.toLocaleString()}`}
          aria-label={`${props.name} ${show(b.from)} – ${show(b.to)}: ${b.count.toLocaleString()} items`} onClick={() => props.onPick(b)}>
          <span style={{ height: `${Math.max(b.count ? 6 : 0, (b.count / top) * 100)}%` }} />
        </button>
      ))}
    </div>
  );
}

function RangeControl(props: { name: string; kind: KeyKind; range: Range | undefined; onCommit: (r: Range) => void }) {
  const [min, setMin] = useState(props.range?.min ?? "");
  const [max, setMax] = useState(props.range?.max ?? "");
  useEffect(() => { setMin(props.range?.min ?? ""); setMax(props.range?.max ?? ""); }, [props.range]);
  const commit = () => {
    if (min !== (props.range?.min ?? "") || max !== (props.range?.max ?? "")) props.onCommit({ min, max });
  };
  const hint = props.kind === "datetime" ? "2024-05-01" : "number";
  return (
    <form className="range" onSubmit={(e) => { e.preventDefault(); commit(); }}>
      <label><span className="sr-only">{props.name} from</span>
        <input type="text" inputMode={props.kind === "number" ? "decimal" : undefined} placeholder={`from (${hint})`} value={min} onChange={(e) => setMin(e.target.value)} onBlur={commit} />
      </label>
      <span aria-hidden="true">–</span>
      <label><span className="sr-only">{props.name} to</span>
        <input type="text" inputMode={props.kind === "number" ? "decimal" : undefined} placeholder="to" value={max} onChange={(e) => setMax(e.target.value)} onBlur={commit} />
      </label>
      <button type="submit" className="sr-only">Apply {props.name} range</button>
    </form>
  );
}

function TextControl(props: { label: string; value: string; placeholder: string; onCommit: (v: string) => void }) {
  const [v, setV] = useState(props.value);
  useEffect(() => setV(props.value), [props.value]);
  const commit = () => { if (v.trim() !== props.value.trim()) props.onCommit(v.trim()); };
  return (
    <form onSubmit={(e) => { e.preventDefault(); commit(); }}>
      <label><span className="sr-only">{props.label}</span>
        <input type="text" placeholder={props.placeholder} value={v} onChange={(e) => setV(e.target.value)} onBlur={commit} />
      </label>
    </form>
  );
}

// -- the results: the virtual grid over keyset pages ----------------------------------------------

function Results(props: { items: IndexItem[]; count: number | null; more: boolean; loadMore: (want: number) => void; selectedId: string | null; onSelect: (id: string | null) => void }) {
  const { items, count } = props;
  const strict = useStrictIntegrations();
  const scroller = useRef<HTMLDivElement>(null);
  const [cols, setCols] = useState(5);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(600);
  const [cursor, setCursor] = useState(-1);

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => {
      setCols(Math.max(1, Math.floor((el.clientWidth - 28 + 10) / (TILE_W + 10))));
      setViewport(el.clientHeight);
    };
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  useEffect(() => { setCursor(-1); if (scroller.current) scroller.current.scrollTop = 0; setScrollTop(0); }, [count]);

  const total = count ?? 0;
  const rows = Math.ceil(total / cols);
  const view = layout(rows, ROW_H, scrollTop, viewport);
  const lastNeeded = Math.min(total, (view.lastRow + 1) * cols);
  // Keyset pages come in order: read on while the rows on screen are past what has arrived.
  useEffect(() => {
    if (props.more && lastNeeded > items.length) props.loadMore(lastNeeded - items.length);
  }, [lastNeeded, items.length, props]);

  // When the columns change (the viewer opening or closing), keep the cursor's item in view.
  useEffect(() => {
    const el = scroller.current;
    if (!el || cursor < 0) return;
    const top = scrollTopFor(Math.floor(cursor / cols), rows, ROW_H, el.clientHeight, el.scrollTop);
    if (top !== el.scrollTop) { el.scrollTop = top; setScrollTop(top); }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [cols]);

  const goTo = (index: number, open: boolean) => {
    setCursor(index);
    const el = scroller.current;
    if (el) {
      const top = scrollTopFor(Math.floor(index / cols), rows, ROW_H, el.clientHeight, el.scrollTop);
      el.scrollTop = top;
      setScrollTop(top);
    }
    const it = items[index];
    if (open && it) props.onSelect(it.id);
  };
  const onKey = (e: ReactKeyboardEvent<HTMLDivElement>) => {
    if (e.key === "Enter" && cursor >= 0 && items[cursor]) { props.onSelect(items[cursor].id); e.preventDefault(); return; }
    if (e.key === "Escape") { props.onSelect(null); return; }
    const n = cursor < 0 && e.key === "End" ? total - 1 : nextIndex(cursor, e.key, cols, total);
    if (n === null) return;
    e.preventDefault();
    goTo(n, props.selectedId !== null);
  };

  return (
    <div className="scroller" ref={scroller} tabIndex={0} role="grid" aria-label="Results" aria-rowcount={rows}
      aria-activedescendant={cursor >= 0 ? `item-${cursor}` : undefined} onKeyDown={onKey} onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}>
      {count === 0 && <div className="empty">No items match this filter.</div>}
      {count === null && <div className="empty" aria-busy="true">Searching…</div>}
      <div style={{ height: view.contentHeight, position: "relative" }}>
        {Array.from({ length: view.lastRow - view.firstRow + 1 }, (_, k) => view.firstRow + k).map((row) => (
          <div key={row} className="grid-row" role="row" aria-rowindex={row + 1}
            style={{ top: view.rowTop(row), height: ROW_H - 10, gridTemplateColumns: `repeat(${cols}, minmax(0, 1fr))`, paddingTop: 10 }}>
            {Array.from({ length: cols }, (_, c) => {
              const index = row * cols + c;
              if (index >= total) return <span key={c} />;
              const it = items[index];
              return <Tile key={c} index={index} item={it ? asTile(it) : undefined} strict={strict}
                selected={cursor === index || (it !== undefined && it.id === props.selectedId)} onOpen={() => { setCursor(index); if (it) props.onSelect(it.id); }} />;
            })}
          </div>
        ))}
      </div>
    </div>
  );
}

// -- actions on the results -----------------------------------------------------------------------

interface Preset {
  id: string;
  name: string;
  description: string | null;
}

interface Collection {
  id: string;
  name: string;
  items: number;
}

function SavePreset(props: { where: string; onClose: () => void; onDone: (message: string) => void }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const p = await api.post<Preset>("/api/v1/index/presets", { name, description: description || null, where: props.where });
      props.onDone(`Saved the filter as preset “${p.name}”.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title="Save the filter as a preset" onClose={props.onClose}>
      <form onSubmit={submit}>
        <p style={{ marginTop: 0 }}>The preset keeps this filter{props.where ? "" : " (every item)"}; apply it from the sidebar, or use <code>preset "name"</code> in a query.</p>
        {props.where && <pre aria-label="Filter to save">{props.where}</pre>}
        <label className="field">Preset name<input type="text" value={name} onChange={(e) => setName(e.target.value)} required /></label>
        <label className="field">Description <span className="hint">optional</span><input type="text" value={description} onChange={(e) => setDescription(e.target.value)} /></label>
        <ErrorBanner error={error} />
        <div className="row end">
          <button type="button" onClick={props.onClose}>Cancel</button>
          <button className="primary" type="submit" disabled={busy}>Save preset</button>
        </div>
      </form>
    </Dialog>
  );
}

function AddToCollection(props: { where: string; count: number; collections: Collection[]; onClose: () => void; onDone: (message: string) => void }) {
  const [choice, setChoice] = useState(props.collections[0]?.id ?? "new");
  const [name, setName] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      let target = props.collections.find((c) => c.id === choice);
      if (choice === "new") target = await api.post<Collection>("/api/v1/index/collections", { name });
      if (!target) return;
      const r = await api.post<{ changed: number }>(`/api/v1/index/collections/${target.id}/items`, { where: props.where });
      props.onDone(`Added ${r.changed.toLocaleString()} item(s) to collection “${target.name}”.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title="Add results to a collection" onClose={props.onClose}>
      <form onSubmit={submit}>
        <p style={{ marginTop: 0 }}>Adds all {props.count.toLocaleString()} matching item(s); items already in the collection stay once.</p>
        <label className="field">Collection
          <select value={choice} onChange={(e) => setChoice(e.target.value)}>
            {props.collections.map((c) => <option key={c.id} value={c.id}>{c.name} ({c.items.toLocaleString()} items)</option>)}
            <option value="new">New collection…</option>
          </select>
        </label>
        {choice === "new" && (
          <label className="field">New collection's name<input type="text" value={name} onChange={(e) => setName(e.target.value)} required /></label>
        )}
        <ErrorBanner error={error} />
        <div className="row end">
          <button type="button" onClick={props.onClose}>Cancel</button>
          <button className="primary" type="submit" disabled={busy}>Add {props.count.toLocaleString()} item(s)</button>
        </div>
      </form>
    </Dialog>
  );
}

interface Dataset {
  id: string;
  title: string;
  role: string;
  rows: number;
}

function LinkToDataset(props: { where: string; count: number; onClose: () => void; onDone: (message: string) => void }) {
  const [list, setList] = useState<Dataset[] | null>(null);
  const [choice, setChoice] = useState("");
  const [title, setTitle] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api.get<{ datasets: Dataset[] }>("/api/v1/datasets", { page_size: 1000 }).then((r) => {
      const editable = r.datasets.filter((d) => d.role !== "viewer");
      setList(editable);
      setChoice(editable[0]?.id ?? "new");
    }, setError);
  }, []);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      let id = choice;
      let name = list?.find((d) => d.id === choice)?.title ?? "";
      if (choice === "new") {
        const made = await api.post<Dataset>("/api/v1/datasets", { title });
        id = made.id;
        name = made.title;
      }
      const r = await api.post<{ linked: number; skipped: number }>(`/api/v1/datasets/${id}/link`, { where: props.where });
      props.onDone(`Linked ${r.linked.toLocaleString()} item(s) into “${name}”; ${r.skipped.toLocaleString()} already linked.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title="Add results to a dataset" onClose={props.onClose}>
      <form onSubmit={submit}>
        <p style={{ marginTop: 0 }}>Links all {props.count.toLocaleString()} matching item(s); items already in the dataset are skipped. Nothing is copied.</p>
        <label className="field">Dataset
          <select value={choice} onChange={(e) => setChoice(e.target.value)} disabled={list === null}>
            {list?.map((d) => <option key={d.id} value={d.id}>{d.title} ({d.rows.toLocaleString()} rows)</option>)}
            <option value="new">New dataset…</option>
          </select>
        </label>
        {choice === "new" && (
          <label className="field">New dataset's title<input type="text" value={title} onChange={(e) => setTitle(e.target.value)} required /></label>
        )}
        <ErrorBanner error={error} />
        <div className="row end">
          <button type="button" onClick={props.onClose}>Cancel</button>
          <button className="primary" type="submit" disabled={busy || list === null}>Link {props.count.toLocaleString()} item(s)</button>
        </div>
      </form>
    </Dialog>
  );
}
