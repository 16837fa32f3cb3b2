// The explorer's similarity panel: items like an item, or near a text or an image embedded by the
// key's endpoint, best first with their scores, under the explorer's current filter
// (POST /api/v1/index/similar; docs/vectors.md). Everything goes through the public REST API.

import { useEffect, useMemo, useState, type FormEvent } from "react";
import { request } from "../api";
import { ErrorBanner } from "../components/ui";
import type { SchemaDoc } from "./schemaOps";
import { describeSource, embeddingKeys, fileBase64, pickKey, showScore, similarBody, type SimilarSource } from "./similarModel";

interface SimilarItem {
  id: string;
  title: string;
  type: string;
  score: number;
}

interface SimilarAnswer {
  key: string;
  metric: string;
  store: string;
  items: SimilarItem[];
}

/** Whether the schema has any embedding key (the explorer shows the "Similar" button then). */
export function hasEmbeddings(schema: SchemaDoc | null): boolean {
  return embeddingKeys(schema).length > 0;
}

export function SimilarPanel(props: { schema: SchemaDoc | null; where: string; source: SimilarSource | null; onOpen: (id: string) => void; onClose: () => void }) {
  const keys = useMemo(() => embeddingKeys(props.schema), [props.schema]);
  const [source, setSource] = useState<SimilarSource | null>(props.source);
  const [chosen, setChosen] = useState<string | null>(null);
  const [k, setK] = useState(20);
  const [filtered, setFiltered] = useState(true);
  const [text, setText] = useState("");
  const [answer, setAnswer] = useState<SimilarAnswer | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => setSource(props.source), [props.source]);

  const key = pickKey(keys, chosen, source);
  const where = filtered ? props.where : "";
  const canText = keys.some((x) => x.text);
  const canImage = keys.some((x) => x.image);

  useEffect(() => {
    setAnswer(null);
    setError(null);
    if (source === null) return;
    if (key === null) {
      setError(new Error("No embedding key can answer this search: an admin sets an embedding endpoint on the Metadata schema page."));
      return;
    }
    const ctl = new AbortController();
    setBusy(true);
    request<SimilarAnswer>("/api/v1/index/similar", { method: "POST", json: similarBody(source, key, k, where), signal: ctl.signal })
      .then(setAnswer, (e) => { if (!ctl.signal.aborted) setError(e); })
      .finally(() => { if (!ctl.signal.aborted) setBusy(false); });
    return () => ctl.abort();
  }, [source, key, k, where]);

  const searchText = (e: FormEvent) => {
    e.preventDefault();
    if (text.trim()) setSource({ text: text.trim() });
  };
  const searchImage = async (file: File | undefined) => {
    if (file) setSource({ image: await fileBase64(file), name: file.name });
  };
  const usable = keys.filter((x) => source === null || pickKey([x], x.name, source) !== null);

  return (
    <section className="similar-panel" aria-label="Similar items panel">
      <div className="row" style={{ justifyContent: "space-between" }}>
        <h2 style={{ margin: 0 }}>{source ? describeSource(source) : "Search by similarity"}</h2>
        <button onClick={props.onClose} aria-label="Close similar items">✕</button>
      </div>
      <div className="row similar-controls">
        {usable.length > 1 && (
          <label>Embedding key{" "}
            <select value={key ?? ""} onChange={(e) => setChosen(e.target.value)}>
              {usable.map((x) => <option key={x.name} value={x.name}>{x.name} ({x.size}-d, {x.metric})</option>)}
            </select>
          </label>
        )}
        <label>Results{" "}
          <select value={k} onChange={(e) => setK(Number(e.target.value))}>
            {[10, 20, 50, 100].map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
        <label title={props.where || "no filter"}>
          <input type="checkbox" checked={filtered} onChange={(e) => setFiltered(e.target.checked)} disabled={!props.where} /> Only items matching the current filter
        </label>
      </div>
      {(canText || canImage) && (
        <form className="row similar-controls" onSubmit={searchText} role="search" aria-label="Search by text or image">
          {canText && (
            <>
              <label className="sr-only" htmlFor="similar-text">Text to search for</label>
              <input id="similar-text" type="search" placeholder="Describe what you are looking for" value={text} onChange={(e) => setText(e.target.value)} style={{ flex: 1 }} />
              <button type="submit" disabled={!text.trim()}>Search</button>
            </>
          )}
          {canImage && (
            <label className="button">Search by image…
              <input type="file" accept="image/*" className="sr-only" onChange={(e) => void searchImage(e.target.files?.[0])} />
            </label>
          )}
        </form>
      )}
      {source === null && !canText && !canImage && <p className="hint">Choose “Find similar” on an item in the viewer.</p>}
      <ErrorBanner error={error} />
      {busy && <p className="hint" aria-busy="true">Searching…</p>}
      {answer && !busy && (
        answer.items.length === 0 ? <p className="hint">No similar items{where ? " match the current filter" : ""}.</p> : (
          <ol className="similar-results" aria-label="Similar items">
            {answer.items.map((it) => (
              <li key={it.id}>
                <button type="button" className="link" onClick={() => props.onOpen(it.id)} aria-label={`Open ${it.title}`}>{it.title}</button>
                <span className="kind">{it.type.replace(/_/g, " ")}</span>
                <span className="score" data-testid="similar-score" title={`${answer.metric} score`}>{showScore(answer.metric, it.score)}</span>
              </li>
            ))}
          </ol>
        )
      )}
    </section>
  );
}
