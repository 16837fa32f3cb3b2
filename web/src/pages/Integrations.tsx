import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, type CheckReport, type CorsState, type Integration } from "../api";
import { useMe } from "../App";
import { Badge, Confirm, Dialog, ErrorBanner, PageHead } from "../components/ui";
import { PROVIDERS, buildSettings, specFor, type FieldSpec, type Provider } from "./integrationForm";

const origin = () => window.location.origin;

export function Integrations() {
  const me = useMe();
  const [list, setList] = useState<Integration[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [adding, setAdding] = useState(false);
  const [checking, setChecking] = useState<Integration | null>(null);
  const [deleting, setDeleting] = useState<Integration | null>(null);

  const load = useCallback(() => {
    api.get<Integration[]>("/api/v1/integrations").then(setList, setError);
  }, []);
  useEffect(load, [load]);

  return (
    <div className="page">
      <PageHead title="Integrations" subtitle="Buckets corral reads your media from. corral never copies the media.">
        {me.role === "admin" && (
          <button className="primary" onClick={() => setAdding(true)}>
            Add integration
          </button>
        )}
      </PageHead>
      <ErrorBanner error={error} />
      <div className="card">
        {list === null ? (
          <div className="empty">Loading…</div>
        ) : list.length === 0 ? (
          <div className="empty">No integrations yet. {me.role === "admin" ? "Add one to connect a bucket." : "Ask an admin to add one."}</div>
        ) : (
          <table className="list">
            <thead>
              <tr>
                <th>Title</th>
                <th>Provider</th>
                <th>Where</th>
                <th>Access</th>
                <th>Signed URLs</th>
                <th><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {list.map((i) => (
                <tr key={i.id}>
                  <td><b>{i.title}</b></td>
                  <td>{i.provider}{i.config.auth ? ` · ${String(i.config.auth)}` : ""}</td>
                  <td><code>{i.scope}</code></td>
                  <td>{i.strict_client_only ? <span className="badge warning">strict client-only</span> : <span className="badge">server reads</span>}</td>
                  <td>{i.signed_url_ttl_seconds} s</td>
                  <td className="row end">
                    <button onClick={() => setChecking(i)}>Check</button>
                    {me.role === "admin" && <button className="danger" onClick={() => setDeleting(i)}>Delete</button>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {adding && (
        <AddIntegration
          onClose={() => setAdding(false)}
          onSaved={(i) => {
            setAdding(false);
            load();
            setChecking(i);
          }}
        />
      )}
      {checking && <CheckDialog integration={checking} onClose={() => setChecking(null)} />}
      {deleting && (
        <Confirm
          title={`Delete integration “${deleting.title}”?`}
          message="Its credentials are forgotten. The bucket and its objects are not touched. An integration that items still use cannot be deleted."
          confirmLabel="Delete integration"
          onConfirm={async () => {
            await api.del(`/api/v1/integrations/${deleting.id}`);
            load();
          }}
          onClose={() => setDeleting(null)}
        />
      )}
    </div>
  );
}

function Field({ spec, value, onChange }: { spec: FieldSpec; value: string; onChange: (v: string) => void }) {
  const common = {
    name: spec.name,
    value,
    required: spec.required,
    placeholder: spec.placeholder,
    autoComplete: "off",
    onChange: (e: { target: { value: string } }) => onChange(e.target.value),
  };
  return (
    <label className="field">
      <span>
        {spec.label}
        {spec.required ? "" : <span style={{ fontWeight: 400, color: "var(--muted)" }}> (optional)</span>}
      </span>
      {spec.hint && <span className="hint">{spec.hint}</span>}
      {spec.multiline ? <textarea {...common} /> : <input type={spec.secret ? "password" : "text"} {...common} />}
    </label>
  );
}

function AddIntegration({ onClose, onSaved }: { onClose: () => void; onSaved: (i: Integration) => void }) {
  const [provider, setProvider] = useState<Provider>("s3");
  const spec = specFor(provider);
  const [auth, setAuth] = useState(spec.auths[0]?.value ?? "");
  const [title, setTitle] = useState("");
  const [values, setValues] = useState<Record<string, string>>({});
  const [strict, setStrict] = useState(false);
  const [ttl, setTtl] = useState(3600);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const choose = (p: Provider) => {
    setProvider(p);
    setAuth(specFor(p).auths[0]?.value ?? "");
    setError(null);
  };
  const set = (name: string) => (v: string) => setValues((old) => ({ ...old, [name]: v }));
  const authSpec = spec.auths.find((a) => a.value === auth);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const saved = await api.post<Integration>("/api/v1/integrations", {
        title,
        provider,
        settings: buildSettings(provider, auth, values),
        signed_url_ttl_seconds: ttl,
        strict_client_only: strict,
      });
      onSaved(saved);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog title="Add integration" onClose={onClose}>
      <div className="tabs" role="tablist" aria-label="Provider">
        {PROVIDERS.map((p) => (
          <button key={p.provider} type="button" role="tab" aria-selected={provider === p.provider} onClick={() => choose(p.provider)}>
            {p.tab}
          </button>
        ))}
      </div>
      <form onSubmit={submit} role="tabpanel" aria-label={spec.tab}>
        <label className="field">
          Title
          <span className="hint">Unique in your organisation; manifests and the SDK name the integration by it.</span>
          <input type="text" name="title" value={title} onChange={(e) => setTitle(e.target.value)} required />
        </label>
        {spec.fields.map((f) => (
          <Field key={`${provider}-${f.name}`} spec={f} value={values[f.name] ?? ""} onChange={set(f.name)} />
        ))}
        {spec.auths.length > 0 && (
          <label className="field">
            Authentication method
            <select name="auth" value={auth} onChange={(e) => setAuth(e.target.value)}>
              {spec.auths.map((a) => (
                <option key={a.value} value={a.value}>
                  {a.label}
                </option>
              ))}
            </select>
          </label>
        )}
        {authSpec?.fields.map((f) => (
          <Field key={`${provider}-${auth}-${f.name}`} spec={f} value={values[f.name] ?? ""} onChange={set(f.name)} />
        ))}
        <label className="field">
          Signed-URL lifetime (seconds)
          <span className="hint">60 s to 7 days (604800 s).</span>
          <input type="number" name="signed_url_ttl_seconds" min={60} max={604800} value={ttl} onChange={(e) => setTtl(Number(e.target.value))} />
        </label>
        <label className="check">
          <input type="checkbox" name="strict_client_only" checked={strict} onChange={(e) => setStrict(e.target.checked)} />
          <span>
            <b>Strict client-only access</b>
            <br />
            <span className="hint" style={{ color: "var(--muted)" }}>
              corral signs URLs but never reads the media's bytes; media properties must come from manifests.
            </span>
          </span>
        </label>
        <p style={{ color: "var(--muted)", fontSize: 12.5 }}>Secrets are encrypted at rest and never shown again.</p>
        <ErrorBanner error={error} />
        <div className="row end">
          <button type="button" onClick={onClose}>Cancel</button>
          <button className="primary" type="submit" disabled={busy}>{busy ? "Saving…" : "Save and check"}</button>
        </div>
      </form>
    </Dialog>
  );
}

function CheckDialog({ integration, onClose }: { integration: Integration; onClose: () => void }) {
  const me = useMe();
  const [report, setReport] = useState<CheckReport | null>(null);
  const [cors, setCors] = useState<CorsState | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [applying, setApplying] = useState(false);

  const run = useCallback(() => {
    setReport(null);
    setError(null);
    api.post<CheckReport>(`/api/v1/integrations/${integration.id}/check`, undefined, { origin: origin() }).then(setReport, setError);
  }, [integration.id]);
  useEffect(run, [run]);

  const corsStep = report?.steps.find((s) => s.name === "cors");
  const apply = async () => {
    setApplying(true);
    setError(null);
    try {
      setCors(await api.post<CorsState>(`/api/v1/integrations/${integration.id}/cors`, undefined, { origin: origin() }));
      run();
    } catch (e) {
      setError(e);
    } finally {
      setApplying(false);
    }
  };

  return (
    <Dialog title={`Check “${integration.title}”`} onClose={onClose} wide>
      <p style={{ marginTop: 0, color: "var(--muted)" }}>
        <code>{integration.scope}</code> · CORS checked for this page's origin <code>{origin()}</code>
      </p>
      <ErrorBanner error={error} />
      {report === null && !error ? (
        <div className="empty" aria-busy="true">Checking…</div>
      ) : report ? (
        <>
          <div className={report.ok ? "alert ok" : "alert error"} role="status">
            {report.ok ? "Every check passed." : "Some checks failed: see below."}
          </div>
          <ol className="steps" aria-label="Check steps">
            {report.steps.map((s) => (
              <li key={s.name} data-step={s.name}>
                <b>{s.name}</b>
                <span><Badge value={s.status} /></span>
                <div>
                  {s.message}
                  {s.hint && s.status !== "ok" && <pre aria-label={`${s.name} hint`}>{s.hint}</pre>}
                </div>
              </li>
            ))}
          </ol>
          {corsStep && corsStep.status === "failed" && (
            <div className="card" style={{ marginTop: 12 }}>
              <h3>Fix CORS</h3>
              <p style={{ marginTop: 0 }}>
                Browsers can only show media from the bucket if its CORS rules let this page's origin GET objects.
                {me.role === "admin" ? " corral can add the rule for you, if the integration's credentials may change CORS rules." : " Ask an admin to apply the rule above."}
              </p>
              {me.role === "admin" && (
                <button className="primary" onClick={apply} disabled={applying}>
                  {applying ? "Applying…" : "Apply CORS rule"}
                </button>
              )}
            </div>
          )}
          {cors && cors.changed && <div className="alert ok" role="status">CORS rule added for {cors.origin}.</div>}
        </>
      ) : null}
      <div className="row end">
        <button onClick={run}>Run again</button>
        <button className="primary" onClick={onClose}>Done</button>
      </div>
    </Dialog>
  );
}
