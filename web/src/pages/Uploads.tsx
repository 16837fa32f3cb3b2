import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, apiPath, request, type Integration } from "../api";
import { Badge, Confirm, ErrorBanner, PageHead, formatDate } from "../components/ui";

interface EntryError {
  seq: number | null;
  where: string;
  url: string | null;
  error: string;
}

interface DryRun {
  entries: number;
  valid: number;
  errors: EntryError[];
  error_count: number;
  sampled: number;
  strict_client_only: boolean;
}

interface ImportState {
  job_id: string;
  status: string;
  files_total: number | null;
  registered: number;
  skipped: number;
  updated: number;
  failed: number;
  failed_batches: number;
  pending: number | null;
  error: string | null;
  errors: EntryError[];
}

interface JobInfo {
  id: string;
  kind: string;
  status: string;
  created_at: string;
  finished_at: string | null;
  units_total: number;
  units_done: number;
}

export function Uploads() {
  const { jobId } = useParams();
  return jobId ? <JobView jobId={jobId} /> : <NewUpload />;
}

/** The problems as CSV (seq, where, url, error), for a spreadsheet or to fix and re-import. */
export function errorsCsv(errors: EntryError[]): string {
  const cell = (v: unknown) => {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return ["seq,where,url,error", ...errors.map((e) => [e.seq, e.where, e.url, e.error].map(cell).join(","))].join("\n") + "\n";
}

function download(name: string, body: string, type: string) {
  const url = URL.createObjectURL(new Blob([body], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  URL.revokeObjectURL(url);
}

function NewUpload() {
  const navigate = useNavigate();
  const [integrations, setIntegrations] = useState<Integration[]>([]);
  const [jobs, setJobs] = useState<JobInfo[]>([]);
  const [folder, setFolder] = useState("");
  const [integration, setIntegration] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [pasted, setPasted] = useState("");
  const [ignoreErrors, setIgnoreErrors] = useState(false);
  const [skipDuplicates, setSkipDuplicates] = useState(false);
  const [report, setReport] = useState<DryRun | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.get<Integration[]>("/api/v1/integrations").then((l) => { setIntegrations(l); if (l[0]) setIntegration((cur) => cur || l[0].title); }, setError);
    api.get<JobInfo[]>("/api/v1/jobs", { limit: 50 }).then((l) => setJobs(l.filter((j) => j.kind === "register")), setError);
  }, []);

  const body = (): BodyInit => file ?? pasted;
  const query = (dry: boolean) => ({ folder, integration, dry_run: dry, ignore_errors: ignoreErrors, skip_duplicate_urls: skipDuplicates });

  const dryRun = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setReport(null);
    try {
      // The folder must exist to check the manifest against it; creating it is harmless.
      await api.post("/api/v1/folders", { path: folder });
      setReport(await request<DryRun>("/api/v1/imports", { method: "POST", body: body(), query: query(true) }));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      const res = await request<{ job_id: string }>("/api/v1/imports", { method: "POST", body: body(), query: query(false) });
      navigate(`/uploads/${res.job_id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="page">
      <PageHead title="Uploads" subtitle="Register the files a JSON or CSV manifest lists into a folder, through an integration. Check it with a dry run first." />
      <div className="card">
        <h2>New upload</h2>
        <form onSubmit={dryRun}>
          <div className="grid-2">
            <label className="field">Folder<span className="hint">A path such as projects/cats-2024; created if missing.</span>
              <input type="text" name="folder" value={folder} onChange={(e) => { setFolder(e.target.value); setReport(null); }} required />
            </label>
            <label className="field">Integration<span className="hint">Every URL in the manifest must lie inside it.</span>
              <select name="integration" value={integration} onChange={(e) => { setIntegration(e.target.value); setReport(null); }} required>
                {integrations.map((i) => <option key={i.id} value={i.title}>{i.title} ({i.scope})</option>)}
              </select>
            </label>
          </div>
          <label className="field">Manifest file<span className="hint">JSON or CSV, as described in the registration guide.</span>
            <input type="file" name="manifest" accept=".json,.csv,application/json,text/csv" onChange={(e) => { setFile(e.target.files?.[0] ?? null); setReport(null); }} />
          </label>
          {!file && (
            <label className="field">…or paste it
              <textarea name="manifest_text" value={pasted} onChange={(e) => { setPasted(e.target.value); setReport(null); }} />
            </label>
          )}
          <label className="check"><input type="checkbox" checked={ignoreErrors} onChange={(e) => setIgnoreErrors(e.target.checked)} /> Register the good files even if some fail (otherwise one bad file fails the whole upload)</label>
          <label className="check"><input type="checkbox" checked={skipDuplicates} onChange={(e) => setSkipDuplicates(e.target.checked)} /> Skip files the folder already has</label>
          <ErrorBanner error={error} />
          <div className="row">
            <button type="submit" disabled={busy || (!file && !pasted.trim())}>{busy && !report ? "Checking…" : "Dry run"}</button>
            <button type="button" className="primary" disabled={busy || !report || (report.error_count > 0 && !ignoreErrors)} onClick={start}>Start upload</button>
          </div>
        </form>
        {report && <DryRunReport report={report} />}
      </div>
      <div className="card">
        <h2>Past uploads</h2>
        {jobs.length === 0 ? <div className="empty">No uploads yet.</div> : (
          <table className="list">
            <thead><tr><th>Started</th><th>Status</th><th>Finished</th><th><span className="sr-only">Open</span></th></tr></thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id}><td>{formatDate(j.created_at)}</td><td><Badge value={j.status} /></td><td>{formatDate(j.finished_at)}</td><td><Link to={`/uploads/${j.id}`}>Open</Link></td></tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </div>
  );
}

function DryRunReport({ report }: { report: DryRun }) {
  return (
    <section aria-label="Dry run report" style={{ marginTop: 16 }}>
      <div className={report.error_count ? "alert error" : "alert ok"} role="status">
        Dry run: {report.valid.toLocaleString()} of {report.entries.toLocaleString()} entries are valid
        {report.error_count ? `; ${report.error_count.toLocaleString()} problem(s).` : ". Nothing was registered yet."}
        {report.strict_client_only ? " (Strict client-only: files were not read.)" : ` ${report.sampled} file(s) checked in the bucket.`}
      </div>
      {report.errors.length > 0 && <ErrorsTable errors={report.errors} />}
    </section>
  );
}

function ErrorsTable({ errors }: { errors: EntryError[] }) {
  return (
    <div className="problems">
      <table className="list" aria-label="Problems">
        <thead><tr><th>Where</th><th>URL</th><th>Problem</th></tr></thead>
        <tbody>
          {errors.map((e, i) => <tr key={i}><td>{e.where}</td><td><code>{e.url ?? "—"}</code></td><td>{e.error}</td></tr>)}
        </tbody>
      </table>
    </div>
  );
}

function JobView({ jobId }: { jobId: string }) {
  const [state, setState] = useState<ImportState | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [rate, setRate] = useState<number | null>(null);
  const [cancelling, setCancelling] = useState(false);
  const last = useRef<{ t: number; done: number } | null>(null);

  const settled = (s: ImportState) => s.registered + s.skipped + s.updated + s.failed;

  const poll = useCallback(async (live: { on: boolean }) => {
    let wait = 0;
    while (live.on) {
      try {
        const s = await api.get<ImportState>(apiPath`/api/v1/imports/${jobId}`, { wait, limit: 1000 });
        if (!live.on) return;
        const now = performance.now();
        if (last.current && now > last.current.t) setRate(((settled(s) - last.current.done) * 1000) / (now - last.current.t));
        last.current = { t: now, done: settled(s) };
        setState(s);
        if (s.status !== "PENDING") return;
        wait = 2;
      } catch (e) {
        setError(e);
        return;
      }
    }
  }, [jobId]);

  useEffect(() => {
    const live = { on: true };
    poll(live);
    return () => { live.on = false; };
  }, [poll]);

  const total = state?.files_total ?? null;
  const pct = state && total ? Math.min(100, (settled(state) / total) * 100) : 0;

  return (
    <div className="page">
      <PageHead title="Upload job" subtitle={jobId}>
        <Link to="/uploads" className="button">All uploads</Link>
        {state?.status === "PENDING" && <button className="danger" onClick={() => setCancelling(true)}>Cancel upload</button>}
      </PageHead>
      <ErrorBanner error={error} />
      {state && (
        <div className="card">
          <div className="row" style={{ justifyContent: "space-between" }}>
            <span>Status: <Badge value={state.status} /></span>
            {state.status === "PENDING" && rate !== null && <span style={{ color: "var(--muted)" }}>{Math.max(0, rate).toFixed(0)} files/s</span>}
          </div>
          <div className="progress" role="progressbar" aria-label="Upload progress" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)} style={{ margin: "12px 0" }}>
            <span style={{ width: `${pct}%` }} />
          </div>
          <div className="stats">
            <div><b>{total === null ? "…" : total.toLocaleString()}</b><span>files</span></div>
            <div><b data-testid="registered">{state.registered.toLocaleString()}</b><span>registered</span></div>
            <div><b>{state.skipped.toLocaleString()}</b><span>skipped</span></div>
            <div><b>{state.updated.toLocaleString()}</b><span>updated</span></div>
            <div><b>{state.failed.toLocaleString()}</b><span>failed</span></div>
            <div><b>{state.pending === null ? "…" : state.pending.toLocaleString()}</b><span>pending</span></div>
          </div>
          {state.error && <div className="alert error">{state.error}</div>}
          {state.errors.length > 0 && (
            <>
              <div className="row" style={{ justifyContent: "space-between", margin: "8px 0" }}>
                <h3 style={{ margin: 0 }}>Problems</h3>
                <button onClick={() => download(`upload-${jobId}-errors.csv`, errorsCsv(state.errors), "text/csv")}>Download problems (CSV)</button>
              </div>
              <ErrorsTable errors={state.errors} />
            </>
          )}
        </div>
      )}
      {cancelling && (
        <Confirm title="Cancel this upload?" message="Pending batches are cancelled; running ones finish. Without “register the good files”, nothing it staged is kept."
          confirmLabel="Cancel upload" onConfirm={async () => { setState(await api.post<ImportState>(apiPath`/api/v1/imports/${jobId}/cancel`)); }} onClose={() => setCancelling(false)} />
      )}
    </div>
  );
}
