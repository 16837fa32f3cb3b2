import { useState, type FormEvent } from "react";
import { api } from "../api";
import { ErrorBanner } from "../components/ui";

export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [mode, setMode] = useState<"password" | "token">("password");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [token, setToken] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.post("/api/v1/sessions", mode === "password" ? { email, password } : { token });
      onSignedIn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="signin-wrap">
      <form className="signin" onSubmit={submit} aria-label="Sign in">
        <div className="brand">
          <span className="brand-mark" aria-hidden="true" /> corral
        </div>
        <h1>Sign in</h1>
        <p style={{ color: "var(--muted)", marginTop: 0 }}>Your media, in your buckets.</p>
        <div className="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === "password"} onClick={() => setMode("password")}>
            E-mail and password
          </button>
          <button type="button" role="tab" aria-selected={mode === "token"} onClick={() => setMode("token")}>
            API token
          </button>
        </div>
        <ErrorBanner error={error} />
        {mode === "password" ? (
          <>
            <label className="field">
              E-mail
              <input type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
            </label>
            <label className="field">
              Password
              <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
            </label>
          </>
        ) : (
          <label className="field">
            API token
            <span className="hint">From <code>corral token create EMAIL</code>. It is exchanged for a session and not kept in the browser.</span>
            <input type="password" autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} required />
          </label>
        )}
        <button className="primary" type="submit" disabled={busy} style={{ width: "100%", justifyContent: "center" }}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </div>
  );
}
