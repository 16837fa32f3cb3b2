import { useEffect, useRef, useState, type ReactNode } from "react";
import { ApiError, errorMessage } from "../api";

/** The API's own message, and each problem with the field it is about. */
export function ErrorBanner({ error }: { error: unknown }) {
  if (!error) return null;
  const entries = error instanceof ApiError ? error.errors.filter((e) => e.message !== error.message) : [];
  return (
    <div className="alert error" role="alert">
      {errorMessage(error)}
      {entries.length > 0 && (
        <ul>
          {entries.map((e, i) => (
            <li key={i}>
              {e.field ? <code>{e.field}</code> : null} {e.field ? ": " : ""}
              {e.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Dialog(props: { title: string; onClose: () => void; children: ReactNode; wide?: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const previous = document.activeElement as HTMLElement | null;
    const first = ref.current?.querySelector<HTMLElement>("input, select, textarea, button");
    first?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") props.onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => {
      window.removeEventListener("keydown", onKey);
      previous?.focus();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  return (
    <div className="dialog-backdrop" onMouseDown={(e) => e.target === e.currentTarget && props.onClose()}>
      <div className={props.wide ? "dialog wide" : "dialog"} role="dialog" aria-modal="true" aria-label={props.title} ref={ref}>
        <h2>{props.title}</h2>
        {props.children}
      </div>
    </div>
  );
}

/** Ask before a destructive action; the action's error (the API's message) shows in the dialog. */
export function Confirm(props: {
  title: string;
  message: ReactNode;
  confirmLabel: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <Dialog title={props.title} onClose={props.onClose}>
      <div style={{ marginBottom: 16 }}>{props.message}</div>
      <ErrorBanner error={error} />
      <div className="row end">
        <button onClick={props.onClose}>Cancel</button>
        <button
          className="danger solid"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            setError(null);
            try {
              await props.onConfirm();
              props.onClose();
            } catch (e) {
              setError(e);
            } finally {
              setBusy(false);
            }
          }}
        >
          {props.confirmLabel}
        </button>
      </div>
    </Dialog>
  );
}

export function Badge({ value }: { value: string }) {
  return <span className={`badge ${value}`}>{value}</span>;
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatDate(iso: string | null | undefined): string {
  if (!iso) return "—";
  return new Date(iso).toLocaleString();
}

export function PageHead(props: { title: string; subtitle?: string; children?: ReactNode }) {
  return (
    <div className="page-head">
      <div>
        <h1>{props.title}</h1>
        {props.subtitle && <p>{props.subtitle}</p>}
      </div>
      <div className="row">{props.children}</div>
    </div>
  );
}
