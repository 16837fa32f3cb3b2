import { useEffect, useRef, useState } from "react";
import { api, apiPath, type Item } from "../api";
import { Confirm, ErrorBanner, formatBytes, formatDate } from "../components/ui";
import { decodeDicom } from "./dicom";
import { PromptDialog } from "./Files";
import { vectorKeys } from "./similarModel";

const TEXT_PREVIEW_BYTES = 200_000;

export function ItemViewer(props: { itemId: string; onClose: () => void; onChanged: () => void; onFindSimilar?: (item: Item, keys: string[]) => void }) {
  const [item, setItem] = useState<Item | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [action, setAction] = useState<null | "rename" | "move" | "delete">(null);
  useEffect(() => {
    setItem(null);
    setError(null);
    api.get<Item>(apiPath`/api/v1/items/${props.itemId}`, { signed_urls: true }).then(setItem, setError);
  }, [props.itemId]);

  return (
    <aside className="viewer" aria-label="Item viewer">
      <div className="row" style={{ justifyContent: "space-between", marginBottom: 10 }}>
        <h2 style={{ margin: 0, overflowWrap: "anywhere" }}>{item?.name ?? "…"}</h2>
        <button onClick={props.onClose} aria-label="Close viewer">✕</button>
      </div>
      <ErrorBanner error={error} />
      {item && (
        <>
          {item.tombstoned_at ? (
            <div className="media tombstone" role="status" style={{ color: "#c9d1e3", padding: 20 }}>
              <span className="badge missing">Gone from bucket</span> Its object was removed from the synced bucket
              (found missing {formatDate(item.tombstoned_at)}); a sync restores it if the object comes back.
            </div>
          ) : <Media item={item} />}
          <div className="row" style={{ marginTop: 10 }}>
            <button onClick={() => setAction("rename")}>Rename</button>
            <button onClick={() => setAction("move")}>Move</button>
            <button className="danger" onClick={() => setAction("delete")}>Delete</button>
            {props.onFindSimilar && vectorKeys(item.client_metadata).length > 0 && (
              <button onClick={() => props.onFindSimilar?.(item, vectorKeys(item.client_metadata))}>Find similar</button>
            )}
          </div>
          <h3 style={{ marginTop: 16 }}>Properties</h3>
          <dl>
            <dt>Type</dt><dd>{item.type.replace(/_/g, " ")}</dd>
            <dt>Size</dt><dd>{formatBytes(item.file_size)}</dd>
            <dt>MIME type</dt><dd>{item.mime_type ?? "—"}</dd>
            <dt>Location</dt><dd><code>{item.url ?? `${item.parts?.length ?? 0} files`}</code></dd>
            <dt>Added</dt><dd>{formatDate(item.created_at)}</dd>
            {item.tombstoned_at && <><dt>Gone from bucket</dt><dd>{formatDate(item.tombstoned_at)}</dd></>}
            {Object.entries(item.media).map(([k, v]) => (
              <FragmentRow key={`m-${k}`} label={k.replace(/_/g, " ")} value={v} />
            ))}
          </dl>
          <h3>Metadata</h3>
          {Object.keys(item.client_metadata).length === 0 ? (
            <p style={{ color: "var(--muted)" }}>No custom metadata.</p>
          ) : (
            <dl aria-label="Metadata">
              {Object.entries(item.client_metadata).map(([k, v]) => <FragmentRow key={`c-${k}`} label={k} value={v} />)}
            </dl>
          )}
        </>
      )}
      {item && action === "rename" && (
        <PromptDialog title={`Rename “${item.name}”`} label="New name" initial={item.name} confirm="Rename" onClose={() => setAction(null)}
          onSubmit={async (name) => { setItem(await api.patch<Item>(`/api/v1/items/${item.id}`, { name })); props.onChanged(); }} />
      )}
      {item && action === "move" && (
        <PromptDialog title={`Move “${item.name}”`} label="Destination folder (path or id)" confirm="Move" onClose={() => setAction(null)}
          onSubmit={async (folder) => { await api.post("/api/v1/items/move", { ids: [item.id], folder }); props.onChanged(); props.onClose(); }} />
      )}
      {item && action === "delete" && (
        <Confirm title={`Delete “${item.name}”?`} message="The item leaves its folder (it can be restored through the API). The file in your bucket is not touched." confirmLabel="Delete item"
          onConfirm={async () => { await api.del(`/api/v1/items/${item.id}`); props.onChanged(); props.onClose(); }} onClose={() => setAction(null)} />
      )}
    </aside>
  );
}

function FragmentRow({ label, value }: { label: string; value: unknown }) {
  return (
    <>
      <dt>{label}</dt>
      <dd>{typeof value === "object" ? JSON.stringify(value) : String(value)}</dd>
    </>
  );
}

function Media({ item }: { item: Item }) {
  const src = item.signed_url;
  switch (item.type) {
    case "image":
      return <div className="media">{src ? <img src={src} alt={item.name} /> : <NoUrl />}</div>;
    case "video":
      return src ? <VideoPlayer src={src} fps={Number(item.media.fps) || 25} name={item.name} /> : <NoUrl />;
    case "audio":
      return <div className="media" style={{ padding: 16 }}>{src ? <audio controls src={src} aria-label={item.name} style={{ width: "100%" }} /> : <NoUrl />}</div>;
    case "pdf":
      return <div className="media">{src ? <iframe src={src} title={item.name} /> : <NoUrl />}</div>;
    case "text":
      return src ? <TextPreview src={src} /> : <NoUrl />;
    case "image_group":
    case "image_sequence":
    case "dicom_series":
      return <Parts item={item} />;
    default:
      return <div className="media" style={{ color: "#c9d1e3", padding: 20 }}>No preview for {item.type.replace(/_/g, " ")} files.</div>;
  }
}

function NoUrl() {
  return <div style={{ color: "#c9d1e3", padding: 20 }}>This item has no signed URL.</div>;
}

function VideoPlayer({ src, fps, name }: { src: string; fps: number; name: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  const [frame, setFrame] = useState(0);
  const step = (n: number) => {
    const v = ref.current;
    if (!v) return;
    v.pause();
    v.currentTime = Math.max(0, Math.min(v.duration || Infinity, (Math.round(v.currentTime * fps) + n) / fps + 1e-4));
  };
  return (
    <div>
      <div className="media">
        <video ref={ref} src={src} controls aria-label={name} onTimeUpdate={(e) => setFrame(Math.round(e.currentTarget.currentTime * fps))}
          onKeyDown={(e) => { if (e.key === ",") step(-1); if (e.key === ".") step(1); }} />
      </div>
      <div className="row" style={{ marginTop: 8 }}>
        <button onClick={() => step(-1)} aria-label="Previous frame">◀ Frame</button>
        <span aria-live="polite" data-testid="frame">Frame {frame}</span>
        <button onClick={() => step(1)} aria-label="Next frame">Frame ▶</button>
        <span style={{ color: "var(--muted)", fontSize: 12 }}>{fps} fps · , and . step</span>
      </div>
    </div>
  );
}

function TextPreview({ src }: { src: string }) {
  const [body, setBody] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const ctl = new AbortController();
    (async () => {
      const res = await fetch(src, { signal: ctl.signal });
      if (!res.ok) throw new Error(`the bucket answered ${res.status} for the file`);
      const reader = res.body!.getReader();
      const chunks: Uint8Array[] = [];
      let size = 0;
      while (size < TEXT_PREVIEW_BYTES) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        size += value.length;
      }
      ctl.abort();
      const all = new Uint8Array(size);
      let o = 0;
      for (const c of chunks) { all.set(c, o); o += c.length; }
      setBody(new TextDecoder().decode(all.slice(0, TEXT_PREVIEW_BYTES)));
    })().catch((e) => { if (!ctl.signal.aborted) setError(e); });
    return () => ctl.abort();
  }, [src]);
  return (
    <div>
      <ErrorBanner error={error} />
      <pre className="text-preview" aria-label="Text preview">{body ?? "Loading…"}</pre>
    </div>
  );
}

function Parts({ item }: { item: Item }) {
  const parts = item.parts ?? [];
  const [index, setIndex] = useState(0);
  const part = parts[index];
  if (!part) return <div className="media"><NoUrl /></div>;
  return (
    <div>
      <div className="media">
        {item.type === "dicom_series" ? <DicomSlice src={part.signed_url} /> : part.signed_url ? <img src={part.signed_url} alt={part.title || `${item.name} ${index + 1}`} /> : <NoUrl />}
      </div>
      <div className="row" style={{ marginTop: 8 }}>
        <button onClick={() => setIndex(Math.max(0, index - 1))} disabled={index === 0} aria-label="Previous part">◀</button>
        <input type="range" min={0} max={parts.length - 1} value={index} onChange={(e) => setIndex(Number(e.target.value))}
          aria-label={item.type === "dicom_series" ? "Slice" : "Frame"} style={{ flex: 1 }} />
        <button onClick={() => setIndex(Math.min(parts.length - 1, index + 1))} disabled={index === parts.length - 1} aria-label="Next part">▶</button>
        <span data-testid="part-position">{index + 1} / {parts.length}</span>
      </div>
    </div>
  );
}

function DicomSlice({ src }: { src: string | null }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (!src) return;
    let live = true;
    setError(null);
    fetch(src)
      .then((r) => { if (!r.ok) throw new Error(`the bucket answered ${r.status} for the slice`); return r.arrayBuffer(); })
      .then((buf) => {
        if (!live || !canvas.current) return;
        const img = decodeDicom(buf);
        const c = canvas.current;
        c.width = img.columns;
        c.height = img.rows;
        c.getContext("2d")!.putImageData(new ImageData(new Uint8ClampedArray(img.rgba), img.columns, img.rows), 0, 0);
      })
      .catch((e) => live && setError(e));
    return () => { live = false; };
  }, [src]);
  return (
    <div style={{ width: "100%" }}>
      <ErrorBanner error={error} />
      <canvas ref={canvas} aria-label="DICOM slice" data-testid="dicom-canvas" style={{ width: "100%", imageRendering: "pixelated", display: "block" }} />
    </div>
  );
}
