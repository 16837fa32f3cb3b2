import { createContext, useCallback, useContext, useEffect, useState } from "react";
import { NavLink, Navigate, Route, Routes } from "react-router-dom";
import { ApiError, api, setUnauthorizedHandler, type Me } from "./api";
import { SignIn } from "./pages/SignIn";
import { Integrations } from "./pages/Integrations";
import { Schema } from "./pages/Schema";
import { Files } from "./pages/Files";
import { Explore } from "./pages/Explore";
import { Uploads } from "./pages/Uploads";
import { Datasets } from "./pages/Datasets";
import { Projects } from "./pages/Projects";
import { Account } from "./pages/Account";

interface AuthState {
  me: Me;
  signOut: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function useMe(): Me {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error("useMe outside the signed-in app");
  return ctx.me;
}

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error("useAuth outside the signed-in app");
  return ctx;
}

const NAV = [
  ["/files", "Files"],
  ["/explore", "Explore"],
  ["/uploads", "Uploads"],
  ["/datasets", "Datasets"],
  ["/projects", "Projects"],
  ["/integrations", "Integrations"],
  ["/schema", "Metadata schema"],
  ["/account", "Account"],
] as const;

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  // Why the first "who am I" failed other than by not being signed in (a 5xx, a 503 while the
  // database restarts, no network): said as such, with a retry, rather than a sign-in form
  // that could only fail too.
  const [failure, setFailure] = useState<string | null>(null);

  const load = useCallback(() => {
    setFailure(null);
    api.get<Me>("/api/v1/me").then(setMe, (e: unknown) => {
      if (e instanceof ApiError && e.status === 401) setMe(null);
      else setFailure(e instanceof Error ? e.message : String(e));
    });
  }, []);

  useEffect(() => {
    load();
    setUnauthorizedHandler(() => setMe(null));
    return () => setUnauthorizedHandler(null);
  }, [load]);

  if (me === undefined && failure !== null) {
    return (
      <div className="page">
        <h1>corral is not answering</h1>
        <p role="alert">Could not reach the server: {failure}</p>
        <button className="primary" onClick={load}>Try again</button>
      </div>
    );
  }
  if (me === undefined) return <div className="empty" aria-busy="true">Loading…</div>;
  if (me === null) return <SignIn onSignedIn={load} />;

  const signOut = async () => {
    await api.del("/api/v1/sessions/current").catch(() => undefined);
    setMe(null);
  };

  return (
    <AuthContext.Provider value={{ me, signOut }}>
      <div className="shell">
        <nav className="nav" aria-label="Main">
          <div className="brand">
            <span className="brand-mark" aria-hidden="true" /> corral
          </div>
          {NAV.map(([to, label]) => (
            <NavLink key={to} to={to}>
              {label}
            </NavLink>
          ))}
          <div className="spacer" />
          <div className="who">
            {me.email}
            <br />
            {me.org_name} · {me.role}
          </div>
          <button className="link" style={{ color: "#c9d1e3", textAlign: "left", padding: "6px 12px" }} onClick={signOut}>
            Sign out
          </button>
        </nav>
        <main className="main">
          <Routes>
            <Route path="/" element={<Navigate to="/files" replace />} />
            <Route path="/files/*" element={<Files />} />
            <Route path="/explore" element={<Explore />} />
            <Route path="/uploads" element={<Uploads />} />
            <Route path="/uploads/:jobId" element={<Uploads />} />
            <Route path="/datasets" element={<Datasets />} />
            <Route path="/datasets/:datasetId" element={<Datasets />} />
            <Route path="/projects" element={<Projects />} />
            <Route path="/projects/:projectId" element={<Projects />} />
            <Route path="/projects/:projectId/units/:dataHash" element={<Projects />} />
            <Route path="/integrations" element={<Integrations />} />
            <Route path="/schema" element={<Schema />} />
            <Route path="/account" element={<Account />} />
            <Route path="*" element={<div className="page"><h1>Not found</h1><p>This page does not exist.</p></div>} />
          </Routes>
        </main>
      </div>
    </AuthContext.Provider>
  );
}
