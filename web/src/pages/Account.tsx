import { useCallback, useEffect, useState } from "react";
import { api, type SessionInfo } from "../api";
import { useAuth } from "../App";
import { Confirm, ErrorBanner, PageHead, formatDate } from "../components/ui";

export function Account() {
  const { me, signOut } = useAuth();
  const [sessions, setSessions] = useState<SessionInfo[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [revoking, setRevoking] = useState<SessionInfo | null>(null);
  const load = useCallback(() => {
    api.get<SessionInfo[]>("/api/v1/sessions").then(setSessions, setError);
  }, []);
  useEffect(load, [load]);
  return (
    <div className="page">
      <PageHead title="Account" subtitle={`${me.email} · ${me.org_name} · ${me.role}`}>
        <button onClick={signOut}>Sign out</button>
      </PageHead>
      <ErrorBanner error={error} />
      <div className="card">
        <h2>Signed-in sessions</h2>
        <table className="list" aria-label="Sessions">
          <thead><tr><th>Browser</th><th>Signed in with</th><th>Since</th><th>Last seen</th><th>Expires</th><th><span className="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {sessions.map((s) => (
              <tr key={s.id}>
                <td>{s.user_agent || "unknown"} {s.current && <span className="badge ok">this session</span>}</td>
                <td>{s.method}</td>
                <td>{formatDate(s.created_at)}</td>
                <td>{formatDate(s.last_seen_at)}</td>
                <td>{formatDate(s.expires_at)}</td>
                <td><button className="danger" onClick={() => setRevoking(s)}>{s.current ? "Sign out" : "Revoke"}</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {revoking && (
        <Confirm title={revoking.current ? "Sign out of this session?" : "Revoke this session?"} message="That browser will have to sign in again."
          confirmLabel={revoking.current ? "Sign out" : "Revoke session"}
          onConfirm={async () => { if (revoking.current) await signOut(); else { await api.del(`/api/v1/sessions/${revoking.id}`); load(); } }}
          onClose={() => setRevoking(null)} />
      )}
    </div>
  );
}
