import { useCallback, useEffect, useMemo, useRef, useState, type KeyboardEvent as ReactKeyboardEvent } from "react";
import { useNavigate, useParams, useSearchParams } from "react-router-dom";
import { api, apiPath, type Folder, type Integration, type Item, type ItemWindow, type SyncState } from "../api";
import { Confirm, Dialog, ErrorBanner, formatBytes, formatDate } from "../components/ui";
import { BLOCK, WindowCache, blocksFor, nextIndex, runsOf } from "./windowCache";
import { ItemViewer } from "./ItemViewer";
import { layout, scrollTopFor } from "./virtualRows";
import { SignBatcher, thumbnailSource } from "./thumbnails";

const signer = new SignBatcher((ids) => api.post<{ items: { id: string; signed_url: string | null }[] }>("/api/v1/items/sign", { ids }).then((r) => r.items));

const TILE_W = 168;
const ROW_H = 178;

export function Files() {
  const params = useParams();
  const folderId = params["*"] || null;
  const [search, setSearch] = useSearchParams();
  const navigate = useNavigate();
  const [tick, setTick] = useState(0); // bumped after a change, to reload tree and grid
  const itemId = search.get("item");

  const openItem = useCallback(
    (id: string | null) => {
      const next = new URLSearchParams(search);
      if (id) next.set("item", id);
      else next.delete("item");
      setSearch(next, { replace: true });
    },
    [search, setSearch],
  );

  return (
    <div className={itemId ? "files with-viewer" : "files"}>
      <FolderTree current={folderId} onOpen={(id) => navigate(`/files/${id}`)} tick={tick} onChanged={() => setTick((t) => t + 1)} />
      {folderId ? (
        <FolderView key={folderId} folderId={folderId} reload={tick} selectedId={itemId} onSelect={openItem} onChanged={() => setTick((t) => t + 1)} />
      ) : (
        <div className="page">
          <h1>Files</h1>
          <p style={{ color: "var(--muted)" }}>Choose a folder on the left to see its items.</p>
        </div>
      )}
      {itemId && <ItemViewer itemId={itemId} onClose={() => openItem(null)} onChanged={() => setTick((t) => t + 1)} />}
    </div>
  );
}

// -- the folder tree ----------------------------------------------------------------

function FolderTree(props: { current: string | null; onOpen: (id: string) => void; tick: number; onChanged: () => void }) {
  const [top, setTop] = useState<Folder[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [creating, setCreating] = useState(false);
  useEffect(() => {
    api.get<Folder[]>("/api/v1/folders", { counts: true }).then(setTop, setError); // listings count only when asked
  }, [props.tick]);
  return (
    <nav className="tree" aria-label="Folders">
      <div className="row" style={{ justifyContent: "space-between", padding: "0 6px 8px" }}>
        <h3 style={{ margin: 0 }}>Folders</h3>
        <button className="link" onClick={() => setCreating(true)}>New folder</button>
      </div>
      <ErrorBanner error={error} />
      {top && top.length === 0 && <div className="empty">No folders yet.</div>}
      <ul role="tree">
        {top?.map((f) => <TreeNode key={f.id} folder={f} {...props} />)}
      </ul>
      {creating && (
        <PromptDialog
          title="New folder"
          label="Path"
          hint="Names joined by /, for example projects/cats-2024. Missing parents are created."
          confirm="Create folder"
          onClose={() => setCreating(false)}
          onSubmit={async (path) => {
            const f = await api.post<Folder>("/api/v1/folders", { path, exist_ok: false });
            props.onChanged();
            props.onOpen(f.id);
          }}
        />
      )}
    </nav>
  );
}

function TreeNode(props: { folder: Folder; current: string | null; onOpen: (id: string) => void; tick: number }) {
  const [open, setOpen] = useState(false);
  const [children, setChildren] = useState<Folder[] | null>(null);
  useEffect(() => {
    if (open) api.get<Folder[]>("/api/v1/folders", { path: props.folder.id, counts: true }).then(setChildren, () => setChildren([]));
  }, [open, props.folder.id, props.tick]);
  const f = props.folder;
  return (
    <li role="treeitem" aria-expanded={open} aria-selected={props.current === f.id}>
      <div className="node-row">
        <button className="twisty" aria-label={open ? `Collapse ${f.name}` : `Expand ${f.name}`} onClick={() => setOpen(!open)}>
          {open ? "▾" : "▸"}
        </button>
        <button className="node" aria-current={props.current === f.id} aria-label={f.name} title={`${f.path}: ${f.items.toLocaleString()} items`}
          onClick={() => { props.onOpen(f.id); setOpen(true); }}>
          <span>{f.name}</span>
          <span className="count" aria-hidden="true">{f.items.toLocaleString()}</span>
        </button>
      </div>
      {open && children && children.length > 0 && (
        <ul role="group">
          {children.map((c) => <TreeNode key={c.id} {...props} folder={c} />)}
        </ul>
      )}
    </li>
  );
}

// -- a folder's items: a virtual grid fetched by position ---------------------------------

function FolderView(props: { folderId: string; reload: number; selectedId: string | null; onSelect: (id: string | null) => void; onChanged: () => void }) {
  const navigate = useNavigate();
  const strict = useStrictIntegrations();
  const [folder, setFolder] = useState<Folder | null>(null);
  const [total, setTotal] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [q, setQ] = useState("");
  const [appliedQ, setAppliedQ] = useState("");
  const [order, setOrder] = useState<"name" | "created_at">("name");
  const [cols, setCols] = useState(5);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(600);
  const [, setVersion] = useState(0);
  const [cursor, setCursor] = useState(-1);
  const [jump, setJump] = useState("");
  const [action, setAction] = useState<null | "rename" | "move" | "delete">(null);
  const cache = useMemo(() => new WindowCache(), []);
  const scroller = useRef<HTMLDivElement>(null);

  useEffect(() => {
    api.get<Folder>(apiPath`/api/v1/folders/${props.folderId}`).then(setFolder, setError);
  }, [props.folderId, props.reload]);

  // Reset on a new query, and fetch the first block at once. Unfiltered, the folder object
  // holds the total (counted once, arriving in parallel; until then the first block shows);
  // with a name filter, the first block's request counts the matches.
  // After an edit (an item renamed, moved or deleted; `reload` changes) the same query is read
  // again in place: the grid keeps its scroll position and cursor, and the blocks on screen are
  // fetched anew, so a change deep in a large folder shows where it was made.
  const [counted, setCounted] = useState<number | null>(null);
  const inflight = useRef(new Map<number, AbortController>());
  const queryKey = `${props.folderId}\n${appliedQ}\n${order}`;
  const lastQuery = useRef("");
  useEffect(() => {
    const fresh = lastQuery.current !== queryKey;
    lastQuery.current = queryKey;
    for (const ctl of inflight.current.values()) ctl.abort();
    inflight.current.clear();
    cache.clear();
    if (fresh) {
      setCounted(null);
      setCursor(-1);
    }
    const ctl = new AbortController();
    cache.start(0);
    api
      .get<ItemWindow>("/api/v1/items/window", { folder: props.folderId, offset: 0, limit: BLOCK, q: appliedQ, order, signed_urls: true, total: appliedQ !== "" }, ctl.signal)
      .then((w) => { cache.put(0, w.items); setCounted(appliedQ ? w.total : w.items.length < BLOCK ? w.items.length : -1); setVersion((v) => v + 1); }, (e) => { cache.fail(0); if (!ctl.signal.aborted) setError(e); });
    return () => ctl.abort();
  }, [queryKey, props.folderId, appliedQ, order, cache, props.reload]);
  useEffect(() => {
    if (counted === null) setTotal(null);
    else if (counted >= 0) setTotal(counted); // filtered, or the whole folder fits in one block
    else setTotal(folder ? folder.items : BLOCK); // the first block, until the folder's count comes
  }, [counted, folder]);

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

  // Until the folder's count arrives, the grid shows the first block and jumps wait.
  const totalKnown = counted !== null && (counted >= 0 || folder !== null);
  const rows = total === null ? 0 : Math.ceil(total / cols);
  // Only the rows on screen (and 3 more each way) exist in the page.
  const view = layout(rows, ROW_H, scrollTop, viewport);
  const firstRow = view.firstRow;
  const lastRow = Math.max(view.firstRow, view.lastRow);

  // Fetch the blocks the visible rows need, once scrolling pauses; requests for blocks that
  // scrolled away are aborted, so a fast scroll through a million items queues nothing.
  useEffect(() => {
    if (total === null) return;
    const needed = blocksFor(firstRow * cols, (lastRow + 1) * cols - 1, total);
    const keep = new Set(needed.map((b) => inflight.current.get(b)).filter(Boolean));
    for (const [b, ctl] of inflight.current) {
      if (!keep.has(ctl)) {
        ctl.abort();
        inflight.current.delete(b);
        cache.fail(b);
      }
    }
    const want = cache.missing(needed);
    if (want.length === 0) return;
    const timer = window.setTimeout(() => {
      for (const [first, count] of runsOf(cache.missing(want), Math.floor(1000 / BLOCK))) {
        const ctl = new AbortController();
        const run = Array.from({ length: count }, (_, k) => first + k);
        for (const b of run) {
          inflight.current.set(b, ctl);
          cache.start(b);
        }
        api
          .get<ItemWindow>("/api/v1/items/window", { folder: props.folderId, offset: first * BLOCK, limit: count * BLOCK, q: appliedQ, order, signed_urls: true, total: false }, ctl.signal)
          .then(
            (w) => { run.forEach((b, k) => cache.put(b, w.items.slice(k * BLOCK, (k + 1) * BLOCK))); setVersion((v) => v + 1); },
            (e) => { run.forEach((b) => cache.fail(b)); if (!ctl.signal.aborted) setError(e); },
          )
          .finally(() => run.forEach((b) => { if (inflight.current.get(b) === ctl) inflight.current.delete(b); }));
      }
    }, 80);
    return () => window.clearTimeout(timer);
  }, [firstRow, lastRow, cols, total, cache, props.folderId, appliedQ, order, props.reload]);

  const goTo = (index: number, open = false) => {
    setCursor(index);
    const el = scroller.current;
    if (el) {
      const top = scrollTopFor(Math.floor(index / cols), rows, ROW_H, el.clientHeight, el.scrollTop);
      el.scrollTop = top;
      setScrollTop(top);
    }
    const it = cache.get(index);
    if (open && it) props.onSelect(it.id);
  };

  const onKey = (e: ReactKeyboardEvent<HTMLDivElement>) => {
    if (total === null) return;
    if (e.key === "Enter" && cursor >= 0) {
      const it = cache.get(cursor);
      if (it) props.onSelect(it.id);
      e.preventDefault();
      return;
    }
    if (e.key === "Escape") { props.onSelect(null); return; }
    const next = nextIndex(cursor, e.key, cols, total);
    if (next === null) return;
    e.preventDefault();
    goTo(next, props.selectedId !== null);
  };

  // When the columns change (the viewer opening or closing narrows or widens the grid), the
  // same scroll position would show other rows: keep the cursor's item in view.
  useEffect(() => {
    const el = scroller.current;
    if (!el || cursor < 0 || total === null) return;
    const top = scrollTopFor(Math.floor(cursor / cols), Math.ceil(total / cols), ROW_H, el.clientHeight, el.scrollTop);
    if (top !== el.scrollTop) { el.scrollTop = top; setScrollTop(top); }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [cols]);

  // Keep the cursor on the opened item when it is opened by a click.
  useEffect(() => {
    if (!props.selectedId) return;
    for (let i = firstRow * cols; i < (lastRow + 1) * cols; i++) if (cache.get(i)?.id === props.selectedId) setCursor(i);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.selectedId]);

  return (
    <section className="folder-view" aria-label="Folder">
      <div className="toolbar">
        <span className="title">{folder?.path ?? "…"}</span>
        <span style={{ color: "var(--muted)" }} aria-live="polite">{total === null || !totalKnown ? "" : `${total.toLocaleString()} item${total === 1 ? "" : "s"}`}</span>
        <form className="row" onSubmit={(e) => { e.preventDefault(); setAppliedQ(q.trim()); }} role="search">
          <label className="sr-only" htmlFor="name-filter">Filter by name</label>
          <input id="name-filter" type="text" placeholder="Filter by name" value={q} onChange={(e) => setQ(e.target.value)} style={{ width: 170 }} />
        </form>
        <label className="sr-only" htmlFor="order">Sort by</label>
        <select id="order" value={order} onChange={(e) => setOrder(e.target.value as "name" | "created_at")} style={{ width: "auto" }}>
          <option value="name">Name</option>
          <option value="created_at">Date added</option>
        </select>
        <form className="row" onSubmit={(e) => { e.preventDefault(); const n = Number(jump); if (totalKnown && total && n >= 1) goTo(Math.min(total, n) - 1); }}>
          <label className="sr-only" htmlFor="jump">Go to position</label>
          <input id="jump" type="number" min={1} max={total ?? undefined} placeholder="Go to #" value={jump} onChange={(e) => setJump(e.target.value)} style={{ width: 110 }} />
          <button type="submit" disabled={!totalKnown}>Go</button>
        </form>
        {folder && folder.role !== "viewer" && (
          <>
            <button onClick={() => setAction("rename")}>Rename</button>
            <button onClick={() => setAction("move")}>Move</button>
            <button className="danger" onClick={() => setAction("delete")}>Delete</button>
          </>
        )}
      </div>
      <ErrorBanner error={error} />
      {folder && folder.kind === "cloud_linked" && <SyncBar folder={folder} onSynced={props.onChanged} />}
      <div
        className="scroller"
        ref={scroller}
        tabIndex={0}
        role="grid"
        aria-label="Items"
        aria-rowcount={rows}
        aria-activedescendant={cursor >= 0 ? `item-${cursor}` : undefined}
        onKeyDown={onKey}
        onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
      >
        {total === 0 && <div className="empty">This folder has no items{appliedQ ? " matching the filter" : ""}.</div>}
        <div style={{ height: view.contentHeight, position: "relative" }}>
          {Array.from({ length: view.lastRow - view.firstRow + 1 }, (_, k) => view.firstRow + k).map((row) => (
            <div
              key={row}
              className="grid-row"
              role="row"
              aria-rowindex={row + 1}
              style={{ top: view.rowTop(row), height: ROW_H - 10, gridTemplateColumns: `repeat(${cols}, minmax(0, 1fr))`, paddingTop: 10 }}
            >
              {Array.from({ length: cols }, (_, c) => {
                const index = row * cols + c;
                if (total === null || index >= total) return <span key={c} />;
                const it = cache.get(index);
                return <Tile key={c} index={index} item={it} strict={strict} selected={cursor === index || (it !== undefined && it.id === props.selectedId)} onOpen={() => { setCursor(index); if (it) props.onSelect(it.id); }} />;
              })}
            </div>
          ))}
        </div>
      </div>
      {folder && action === "rename" && (
        <PromptDialog title={`Rename folder “${folder.name}”`} label="New name" initial={folder.name} confirm="Rename" onClose={() => setAction(null)}
          onSubmit={async (name) => { await api.patch(`/api/v1/folders/${folder.id}`, { name }); props.onChanged(); }} />
      )}
      {folder && action === "move" && (
        <PromptDialog title={`Move folder “${folder.name}”`} label="New parent folder (path or id; empty: the top)" initial="" confirm="Move" allowEmpty onClose={() => setAction(null)}
          onSubmit={async (parent) => { await api.post(`/api/v1/folders/${folder.id}/move`, { parent: parent || null }); props.onChanged(); }} />
      )}
      {folder && action === "delete" && (
        <Confirm
          title={`Delete folder “${folder.path}”?`}
          message={<>This deletes the folder, every folder below it and all their items from corral ({folder.items.toLocaleString()} items directly in it). The files in your bucket are not touched.</>}
          confirmLabel="Delete folder"
          onConfirm={async () => { await api.del(`/api/v1/folders/${folder.id}`, { recursive: true }); navigate("/files"); props.onChanged(); }}
          onClose={() => setAction(null)}
        />
      )}
    </section>
  );
}

/** A cloud-synced folder's source, last sync and "Sync now" (with its progress), through
 * ``POST /api/v1/folders/{id}/sync`` and the long-polled ``GET /api/v1/folders/{id}/syncs/{job}``. */
function SyncBar(props: { folder: Folder; onSynced: () => void }) {
  const { folder, onSynced } = props;
  const [state, setState] = useState<SyncState | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const alive = useRef(true);
  useEffect(() => () => { alive.current = false; }, []);
  useEffect(() => { setState(null); setError(null); setBusy(false); }, [folder.id]);

  const syncNow = async () => {
    setBusy(true);
    setError(null);
    try {
      const started = await api.post<{ job_id: string; started: boolean }>(apiPath`/api/v1/folders/${folder.id}/sync`, {});
      let now = await api.get<SyncState>(apiPath`/api/v1/folders/${folder.id}/syncs/${started.job_id}`);
      while (alive.current && now.status === "pending") {
        setState(now);
        now = await api.get<SyncState>(apiPath`/api/v1/folders/${folder.id}/syncs/${started.job_id}`, { wait: 5 });
      }
      if (!alive.current) return;
      setState(now);
      onSynced();
    } catch (e) {
      if (alive.current) setError(e);
    } finally {
      if (alive.current) setBusy(false);
    }
  };

  const c = state?.counts;
  return (
    <div className="sync-bar" role="region" aria-label="Cloud sync">
      <span>Synced from <code>{folder.remote_url}</code></span>
      <span style={{ color: "var(--muted)" }}>Last sync: {folder.last_synced_at ? formatDate(folder.last_synced_at) : "never"}</span>
      {folder.role !== "viewer" && <button onClick={syncNow} disabled={busy}>{busy ? "Syncing…" : "Sync now"}</button>}
      {state && (
        <span aria-live="polite" className="sync-progress">
          {state.status === "pending"
            ? `Syncing: ${state.files_done.toLocaleString()} files done, ${state.files_pending.toLocaleString()} pending, ${state.files_failed.toLocaleString()} failed`
            : state.status === "done"
              ? `Sync done: ${c?.new ?? 0} new, ${c?.updated ?? 0} updated, ${c?.restored ?? 0} restored, ${c?.tombstoned ?? 0} gone, ${state.files_failed} failed`
              : `Sync ${state.status}${state.error ? `: ${state.error}` : ""}`}
        </span>
      )}
      <ErrorBanner error={error} />
    </div>
  );
}

let strictIntegrations: Promise<Set<string>> | null = null;

/** Ids of the organisation's strict client-only integrations (fetched once per page load; on an
 * error, treated as none, so tiles try corral's thumbnails and fall back to signed URLs). */
export function useStrictIntegrations(): Set<string> | null {
  const [strict, setStrict] = useState<Set<string> | null>(null);
  useEffect(() => {
    strictIntegrations ??= api.get<Integration[]>("/api/v1/integrations").then(
      (list) => new Set(list.filter((i) => i.strict_client_only).map((i) => i.id)),
      () => new Set<string>(),
    );
    let live = true;
    strictIntegrations.then((s) => { if (live) setStrict(s); });
    return () => { live = false; };
  }, []);
  return strict;
}

/** What a tile shows: an item from a folder window, or an Index result mapped onto it. */
export type TileItem = Pick<Item, "id" | "name" | "type" | "file_size" | "integration_id" | "signed_url" | "tombstoned_at">;

export function Tile(props: { index: number; item: TileItem | undefined; selected: boolean; onOpen: () => void; strict: Set<string> | null }) {
  const it = props.item;
  if (!it) {
    return <div className="tile placeholder" id={`item-${props.index}`} role="gridcell" aria-busy="true"><div className="thumb" /><div className="name">#{(props.index + 1).toLocaleString()}</div></div>;
  }
  // a tombstone's object is gone from its synced bucket: no picture to load, a badge says so
  const gone = Boolean(it.tombstoned_at);
  const thumb = props.strict && !gone ? thumbnailSource(it, props.strict) : null;
  return (
    <button className={gone ? "tile gone" : "tile"} id={`item-${props.index}`} role="gridcell" aria-selected={props.selected} tabIndex={-1} onClick={props.onOpen} title={it.name} data-type={it.type}>
      <div className="thumb">{gone ? <span className="badge missing" title={`Gone from the bucket since ${formatDate(it.tombstoned_at)}`}>Gone from bucket</span> : thumb ? <img key={it.id} src={thumb.src} alt="" loading="lazy" decoding="async"
        onError={(e) => {
          const img = e.currentTarget;
          if (thumb.fallback && img.src !== thumb.fallback) img.src = thumb.fallback;
          else if (thumb.fallback === null && it.signed_url === null && !img.dataset.signed) {
            // no signed URL came with the item (the explorer's index results): ask for one
            img.dataset.signed = "1";
            signer.url(it.id).then((url) => { if (url) img.src = url; else img.hidden = true; });
          } else img.hidden = true;
        }} /> : <span>{it.type.replace("_", " ")}</span>}</div>
      <div className="name">{it.name}<br /><span style={{ color: "var(--muted)" }}>{formatBytes(it.file_size)}</span></div>
    </button>
  );
}

export function PromptDialog(props: {
  title: string; label: string; hint?: string; initial?: string; confirm: string; allowEmpty?: boolean;
  onClose: () => void; onSubmit: (value: string) => Promise<void>;
}) {
  const [value, setValue] = useState(props.initial ?? "");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <form onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        try { await props.onSubmit(value.trim()); props.onClose(); } catch (err) { setError(err); } finally { setBusy(false); }
      }}>
        <label className="field">{props.label}{props.hint && <span className="hint">{props.hint}</span>}
          <input type="text" value={value} onChange={(e) => setValue(e.target.value)} required={!props.allowEmpty} />
        </label>
        <ErrorBanner error={error} />
        <div className="row end"><button type="button" onClick={props.onClose}>Cancel</button><button className="primary" type="submit" disabled={busy}>{props.confirm}</button></div>
      </form>
    </Dialog>
  );
}
