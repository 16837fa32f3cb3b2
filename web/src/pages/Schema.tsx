import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api } from "../api";
import { useMe } from "../App";
import { Confirm, Dialog, ErrorBanner, PageHead, formatDate } from "../components/ui";
import { TYPES, addEnumOptions, addKey, defFromForm, describe, hardDelete, restore, retype, softDelete, type SchemaDoc } from "./schemaOps";

interface SchemaState {
  version: number;
  updated_at: string | null;
  updated_by: string | null;
  schema: SchemaDoc;
}

interface VersionInfo {
  version: number;
  created_at: string;
  created_by: string | null;
  diff: Record<string, unknown>;
}

type Edit = { kind: "add" } | { kind: "retype"; key: string } | { kind: "options"; key: string };
type Danger = { kind: "soft" | "hard"; key: string };

export function Schema() {
  const me = useMe();
  const admin = me.role === "admin";
  const [state, setState] = useState<SchemaState | null>(null);
  const [versions, setVersions] = useState<VersionInfo[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [edit, setEdit] = useState<Edit | null>(null);
  const [danger, setDanger] = useState<Danger | null>(null);

  const load = useCallback(() => {
    api.get<SchemaState>("/api/v1/metadata-schema").then(setState, setError);
    api.get<VersionInfo[]>("/api/v1/metadata-schema/versions").then(setVersions, setError);
  }, []);
  useEffect(load, [load]);

  /** Save a new document, based on the version we read (the API refuses it if it moved on). */
  const save = async (doc: SchemaDoc, what: string) => {
    if (!state) return;
    const res = await api.put<{ version: number; changed: boolean }>("/api/v1/metadata-schema", doc, { base_version: state.version });
    setNotice(res.changed ? `${what}: saved as version ${res.version}.` : `${what}: nothing changed.`);
    setError(null);
    load();
  };

  const keys = state ? Object.entries(state.schema.keys).sort(([a], [b]) => a.localeCompare(b)) : [];

  return (
    <div className="page">
      <PageHead
        title="Metadata schema"
        subtitle={state ? `Version ${state.version}${state.updated_by ? ` · saved by ${state.updated_by}, ${formatDate(state.updated_at)}` : ""}` : undefined}
      >
        {admin && <button className="primary" onClick={() => setEdit({ kind: "add" })}>Add key</button>}
      </PageHead>
      <ErrorBanner error={error} />
      {notice && <div className="alert ok" role="status">{notice}</div>}
      <div className="card">
        {keys.length === 0 ? (
          <div className="empty">No keys yet.{admin ? " Add one to check and normalise custom metadata." : ""}</div>
        ) : (
          <table className="list" aria-label="Schema keys">
            <thead>
              <tr><th>Key</th><th>Type</th><th>Required</th><th>State</th>{admin && <th><span className="sr-only">Actions</span></th>}</tr>
            </thead>
            <tbody>
              {keys.map(([name, def]) => (
                <tr key={name} data-key={name}>
                  <td><code>{name}</code></td>
                  <td>{describe(def)}</td>
                  <td>{def.required ? "yes" : "—"}</td>
                  <td>{def.deleted ? <span className="badge bad">{def.deleted}-deleted</span> : <span className="badge ok">live</span>}</td>
                  {admin && (
                    <td className="row end">
                      {!def.deleted && <button onClick={() => setEdit({ kind: "retype", key: name })}>Retype</button>}
                      {!def.deleted && def.type === "enum" && <button onClick={() => setEdit({ kind: "options", key: name })}>Add options</button>}
                      {!def.deleted && <button className="danger" onClick={() => setDanger({ kind: "soft", key: name })}>Delete</button>}
                      {def.deleted === "soft" && (
                        <button onClick={() => state && save(restore(state.schema, name), `Restored ${name}`).catch(setError)}>Restore</button>
                      )}
                      {def.deleted !== "hard" && <button className="danger" onClick={() => setDanger({ kind: "hard", key: name })}>Delete for good</button>}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <div className="card">
        <h2>History</h2>
        {versions.length === 0 ? (
          <div className="empty">The schema has never been saved.</div>
        ) : (
          <table className="list" aria-label="Schema history">
            <thead><tr><th>Version</th><th>Saved</th><th>By</th><th>Changes</th></tr></thead>
            <tbody>
              {versions.map((v) => (
                <tr key={v.version}>
                  <td>{v.version}</td>
                  <td>{formatDate(v.created_at)}</td>
                  <td>{v.created_by ?? "—"}</td>
                  <td><Diff diff={v.diff} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {edit && state && (
        <EditDialog
          edit={edit}
          doc={state.schema}
          onClose={() => setEdit(null)}
          onSave={async (doc, what) => {
            await save(doc, what);
            setEdit(null);
          }}
        />
      )}
      {danger && state && (
        <Confirm
          title={danger.kind === "soft" ? `Delete key “${danger.key}”?` : `Delete key “${danger.key}” for good?`}
          message={
            danger.kind === "soft"
              ? "The key is no longer checked or required. Its definition is kept, so it can be restored."
              : "The definition is forgotten and cannot be restored. The name becomes free to reuse with any type."
          }
          confirmLabel={danger.kind === "soft" ? "Delete key" : "Delete for good"}
          onConfirm={() => save(danger.kind === "soft" ? softDelete(state.schema, danger.key) : hardDelete(state.schema, danger.key), `Deleted ${danger.key}`)}
          onClose={() => setDanger(null)}
        />
      )}
    </div>
  );
}

function Diff({ diff }: { diff: Record<string, unknown> }) {
  const entries = Object.entries(diff);
  if (entries.length === 0) return <span>—</span>;
  return (
    <ul style={{ margin: 0, paddingLeft: 16 }}>
      {entries.map(([k, v]) => (
        <li key={k} className={k === "added" || k === "restored" ? "diff-added" : k === "deleted" ? "diff-deleted" : undefined}>
          <b>{k.replace(/_/g, " ")}</b>: {formatDiffValue(v)}
        </li>
      ))}
    </ul>
  );
}

function formatDiffValue(v: unknown): string {
  if (Array.isArray(v)) {
    return v
      .map((x) => {
        if (typeof x === "string") return x;
        const o = x as Record<string, unknown>;
        if ("from" in o) return `${String(o.key)} (${String(o.from)} → ${String(o.to)})`;
        if ("hard" in o) return `${String(o.key)} (${o.hard ? "hard" : "soft"})`;
        if ("required" in o) return `${String(o.key)} (${o.required ? "now required" : "now optional"})`;
        return JSON.stringify(o);
      })
      .join(", ");
  }
  if (v && typeof v === "object") return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}: ${Array.isArray(x) ? x.join(", ") : JSON.stringify(x)}`).join("; ");
  return JSON.stringify(v);
}

function EditDialog(props: { edit: Edit; doc: SchemaDoc; onClose: () => void; onSave: (doc: SchemaDoc, what: string) => Promise<void> }) {
  const { edit, doc } = props;
  const current = edit.kind === "add" ? undefined : doc.keys[edit.key];
  const [name, setName] = useState("");
  const [type, setType] = useState(current?.type ?? "varchar");
  const [maxLength, setMaxLength] = useState(current?.max_length ? String(current.max_length) : "");
  const [size, setSize] = useState(current?.size ? String(current.size) : "");
  const [values, setValues] = useState("");
  const [required, setRequired] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (edit.kind === "add") await props.onSave(addKey(doc, name.trim(), defFromForm(type, { maxLength, size, values, required })), `Added ${name.trim()}`);
      else if (edit.kind === "retype") await props.onSave(retype(doc, edit.key, defFromForm(type, { maxLength, size, values })), `Retyped ${edit.key}`);
      else await props.onSave(addEnumOptions(doc, edit.key, values.split(",")), `Added options to ${edit.key}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const title = edit.kind === "add" ? "Add key" : edit.kind === "retype" ? `Retype “${edit.key}”` : `Add options to “${edit.key}”`;
  return (
    <Dialog title={title} onClose={props.onClose}>
      <form onSubmit={submit}>
        {edit.kind === "add" && (
          <label className="field">
            Key
            <span className="hint">Letters, digits, and . - _ ; for example <code>camera</code> or <code>video.fps</code>.</span>
            <input type="text" name="key" value={name} onChange={(e) => setName(e.target.value)} required />
          </label>
        )}
        {edit.kind !== "options" && (
          <label className="field">
            Type
            <select name="type" value={type} onChange={(e) => setType(e.target.value)}>
              {TYPES.map((t) => <option key={t} value={t}>{t}</option>)}
            </select>
          </label>
        )}
        {edit.kind !== "options" && type === "varchar" && (
          <label className="field">Maximum length <span className="hint">optional</span>
            <input type="number" name="max_length" min={1} value={maxLength} onChange={(e) => setMaxLength(e.target.value)} />
          </label>
        )}
        {edit.kind !== "options" && type === "embedding" && (
          <label className="field">Size <span className="hint">1 to 4096 numbers</span>
            <input type="number" name="size" min={1} max={4096} value={size} onChange={(e) => setSize(e.target.value)} required />
          </label>
        )}
        {(edit.kind === "options" || type === "enum") && (
          <label className="field">
            {edit.kind === "options" ? "New options" : "Options"}
            <span className="hint">Comma-separated.{current?.values ? ` Current: ${current.values.join(", ")}.` : ""}</span>
            <input type="text" name="values" value={values} onChange={(e) => setValues(e.target.value)} required />
          </label>
        )}
        {edit.kind === "add" && (
          <label className="check">
            <input type="checkbox" name="required" checked={required} onChange={(e) => setRequired(e.target.checked)} /> Required
          </label>
        )}
        <ErrorBanner error={error} />
        <div className="row end">
          <button type="button" onClick={props.onClose}>Cancel</button>
          <button className="primary" type="submit" disabled={busy}>Save</button>
        </div>
      </form>
    </Dialog>
  );
}
