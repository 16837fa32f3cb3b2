import { useCallback, useEffect, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, apiPath } from "../api";
import { Badge, Dialog, ErrorBanner, PageHead, formatDate } from "../components/ui";

interface Dataset {
  id: string;
  title: string;
  description: string;
  rows: number;
  role: string;
  created_at: string;
}

interface DataRow {
  uid: string;
  title: string;
  data_type: string;
  file_link: string | null;
  parts: string[];
  item_id: string;
  created_at: string;
}

interface Verification {
  job_id: string;
  status: string;
  rows_total: number | null;
  checked: number;
  counts: Record<string, number>;
  problem_count: number;
  problems: { row_id: string; item_id: string; url: string; problem: string; message: string }[];
  error: string | null;
}

export function Datasets() {
  const { datasetId } = useParams();
  return datasetId ? <DatasetView key={datasetId} id={datasetId} /> : <DatasetList />;
}

function DatasetList() {
  const navigate = useNavigate();
  const [list, setList] = useState<Dataset[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [creating, setCreating] = useState(false);
  useEffect(() => {
    api.get<{ datasets: Dataset[] }>("/api/v1/datasets", { page_size: 1000 }).then((r) => setList(r.datasets), setError);
  }, []);
  return (
    <div className="page">
      <PageHead title="Datasets" subtitle="Named collections of registered files. Linking never copies media.">
        <button className="primary" onClick={() => setCreating(true)}>New dataset</button>
      </PageHead>
      <ErrorBanner error={error} />
      <div className="card">
        {list === null ? <div className="empty">Loading…</div> : list.length === 0 ? <div className="empty">No datasets yet.</div> : (
          <table className="list">
            <thead><tr><th>Title</th><th>Description</th><th>Data rows</th><th>Your role</th><th>Created</th></tr></thead>
            <tbody>
              {list.map((d) => (
                <tr key={d.id}><td><Link to={`/datasets/${d.id}`}>{d.title}</Link></td><td>{d.description || "—"}</td><td>{d.rows.toLocaleString()}</td><td>{d.role}</td><td>{formatDate(d.created_at)}</td></tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {creating && <CreateDataset onClose={() => setCreating(false)} onCreated={(d) => navigate(`/datasets/${d.id}`)} />}
    </div>
  );
}

function CreateDataset({ onClose, onCreated }: { onClose: () => void; onCreated: (d: Dataset) => void }) {
  const [title, setTitle] = useState("");
  const [description, setDescription] = useState("");
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    try {
      onCreated(await api.post<Dataset>("/api/v1/datasets", { title, description }));
    } catch (err) {
      setError(err);
    }
  };
  return (
    <Dialog title="New dataset" onClose={onClose}>
      <form onSubmit={submit}>
        <label className="field">Title<input type="text" name="title" value={title} onChange={(e) => setTitle(e.target.value)} required /></label>
        <label className="field">Description <span className="hint">optional</span><input type="text" name="description" value={description} onChange={(e) => setDescription(e.target.value)} /></label>
        <ErrorBanner error={error} />
        <div className="row end"><button type="button" onClick={onClose}>Cancel</button><button className="primary" type="submit">Create dataset</button></div>
      </form>
    </Dialog>
  );
}

function DatasetView({ id }: { id: string }) {
  const [dataset, setDataset] = useState<Dataset | null>(null);
  const [rows, setRows] = useState<DataRow[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [folder, setFolder] = useState("");
  const [recursive, setRecursive] = useState(true);
  const [verification, setVerification] = useState<Verification | null>(null);
  const [verifying, setVerifying] = useState(false);

  const load = useCallback(() => {
    api.get<Dataset>(apiPath`/api/v1/datasets/${id}`).then(setDataset, setError);
    api.get<{ rows: DataRow[]; next_page_token: string | null }>(apiPath`/api/v1/datasets/${id}/rows`, { page_size: 100 }).then((r) => { setRows(r.rows); setNext(r.next_page_token); }, setError);
  }, [id]);
  useEffect(load, [load]);

  const more = async () => {
    if (!next) return;
    try {
      const r = await api.get<{ rows: DataRow[]; next_page_token: string | null }>(apiPath`/api/v1/datasets/${id}/rows`, { page_size: 100, page_token: next });
      setRows((old) => [...(old ?? []), ...r.rows]);
      setNext(r.next_page_token);
    } catch (err) {
      setError(err);
    }
  };

  const link = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const r = await api.post<{ linked: number; skipped: number }>(apiPath`/api/v1/datasets/${id}/link`, { folder, recursive });
      setNotice(`Linked ${r.linked.toLocaleString()} item(s); ${r.skipped.toLocaleString()} already linked.`);
      load();
    } catch (err) {
      setError(err);
    }
  };

  const verify = async () => {
    setVerifying(true);
    setError(null);
    setVerification(null);
    try {
      const { job_id } = await api.post<{ job_id: string }>(apiPath`/api/v1/datasets/${id}/verify`);
      let v = await api.get<Verification>(`/api/v1/datasets/verify/${job_id}`, { wait: 0 });
      setVerification(v);
      while (v.status === "PENDING") {
        v = await api.get<Verification>(`/api/v1/datasets/verify/${job_id}`, { wait: 5 });
        setVerification(v);
      }
    } catch (err) {
      setError(err);
    } finally {
      setVerifying(false);
    }
  };

  return (
    <div className="page">
      <PageHead title={dataset?.title ?? "Dataset"} subtitle={dataset ? `${dataset.rows.toLocaleString()} data rows · your role: ${dataset.role}` : undefined}>
        <Link to="/datasets" className="button">All datasets</Link>
        <button className="primary" onClick={verify} disabled={verifying || dataset === null}>{verifying ? "Verifying…" : "Verify file locations"}</button>
      </PageHead>
      <ErrorBanner error={error} />
      {notice && <div className="alert ok" role="status">{notice}</div>}
      {verification && (
        <div className="card" aria-label="Verification">
          <h2>Verification <Badge value={verification.status} /></h2>
          <div className="stats">
            {["ok", "missing", "forbidden", "changed", "error", "skipped"].map((k) => (
              <div key={k}><b data-testid={`verify-${k}`}>{verification.counts[k] ?? 0}</b><span>{k}</span></div>
            ))}
            <div><b>{verification.checked}/{verification.rows_total ?? "…"}</b><span>checked</span></div>
          </div>
          {verification.error && <div className="alert error">{verification.error}</div>}
          {verification.problems.length > 0 && (
            <div className="problems">
              <table className="list" aria-label="Problems found">
                <thead><tr><th>Problem</th><th>File</th><th>Detail</th></tr></thead>
                <tbody>{verification.problems.map((p, i) => <tr key={i}><td><Badge value={p.problem} /></td><td><code>{p.url}</code></td><td>{p.message}</td></tr>)}</tbody>
              </table>
            </div>
          )}
        </div>
      )}
      {dataset && dataset.role !== "viewer" && (
        <div className="card">
          <h2>Link a folder</h2>
          <form className="row" onSubmit={link}>
            <label className="sr-only" htmlFor="link-folder">Folder path or id</label>
            <input id="link-folder" type="text" placeholder="Folder path, e.g. projects/cats-2024" value={folder} onChange={(e) => setFolder(e.target.value)} required style={{ maxWidth: 360 }} />
            <label className="row"><input type="checkbox" checked={recursive} onChange={(e) => setRecursive(e.target.checked)} /> with its subfolders</label>
            <button className="primary" type="submit">Link folder</button>
          </form>
        </div>
      )}
      <div className="card">
        <h2>Data rows</h2>
        {rows === null ? (error ? null : <div className="empty">Loading…</div>) : rows.length === 0 ? <div className="empty">No data rows yet: link a folder.</div> : (
          <table className="list" aria-label="Data rows">
            <thead><tr><th>Title</th><th>Type</th><th>File</th><th>Linked</th></tr></thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.uid}><td><Link to={`/files?item=${r.item_id}`}>{r.title}</Link></td><td>{r.data_type.replace(/_/g, " ")}</td><td><code>{r.file_link ?? `${r.parts.length} files`}</code></td><td>{formatDate(r.created_at)}</td></tr>
              ))}
            </tbody>
          </table>
        )}
        {next && <div className="row end" style={{ marginTop: 10 }}><button onClick={more}>Load more</button></div>}
      </div>
    </div>
  );
}
