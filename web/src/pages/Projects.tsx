import { useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, apiPath, type Item } from "../api";
import { ErrorBanner, PageHead, formatDate } from "../components/ui";
import {
  colourFor,
  drawObject,
  frameLabels,
  labelledFrames,
  svgPoints,
  type Drawn,
  type LabelObject,
} from "./labelGeometry";

interface OntologyNode {
  featureNodeHash: string;
  name?: string;
  color?: string;
  shape?: string;
  attributes?: OntologyNode[];
  options?: { featureNodeHash: string; label?: string }[];
}

interface Ontology {
  id: string;
  title: string;
  description: string;
  editor: { objects?: OntologyNode[]; classifications?: OntologyNode[] };
  created_at: string;
}

interface Project {
  id: string;
  title: string;
  description: string;
  status: string;
  ontology_id: string;
  ontology_title: string;
  dataset_ids: string[];
  creator_email: string;
  role: string;
  created_at: string;
}

interface UnitMeta {
  data_hash: string;
  data_title: string;
  data_type: string;
  dataset_title: string;
  label_hash: string | null;
  label_status: string;
  width: number | null;
  height: number | null;
  number_of_frames: number;
  frames_per_second: number | null;
  backing_item_uuid: string;
  last_edited_at: string | null;
}

interface UnitLabels {
  metadata: UnitMeta;
  label_row: {
    data_units: Record<string, { labels: unknown; width: number | null; height: number | null }>;
    classification_answers: Record<string, { featureHash: string; classifications?: { name?: string; featureHash: string; answers: unknown }[] }>;
    object_answers: Record<string, unknown>;
  } | null;
}

const SHAPE_NAMES: Record<string, string> = {
  bounding_box: "box", rotatable_bounding_box: "rotated box", polygon: "polygon", polyline: "polyline",
  point: "point", bitmask: "bitmask", skeleton: "skeleton",
};

export function Projects() {
  const { projectId, dataHash } = useParams();
  if (projectId && dataHash) return <LabelViewerPage projectId={projectId} dataHash={dataHash} />;
  if (projectId) return <ProjectView id={projectId} />;
  return <ProjectList />;
}

function ProjectList() {
  const [projects, setProjects] = useState<Project[] | null>(null);
  const [ontologies, setOntologies] = useState<Ontology[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api.get<{ projects: Project[] }>("/api/v1/projects").then((r) => setProjects(r.projects), setError);
    api.get<{ ontologies: Ontology[] }>("/api/v1/ontologies").then((r) => setOntologies(r.ontologies), setError);
  }, []);
  return (
    <div className="page">
      <PageHead title="Projects" subtitle="Labelling projects: an ontology and the datasets whose files are labelled with it. Labels are created with the Encord SDK; here you view them." />
      <ErrorBanner error={error} />
      <div className="card">
        <h2>Projects</h2>
        {projects === null ? <div className="empty">Loading…</div> : projects.length === 0 ? <div className="empty">No projects yet.</div> : (
          <table className="list" aria-label="Projects">
            <thead><tr><th>Title</th><th>Ontology</th><th>Datasets</th><th>Your role</th><th>Created by</th><th>Created</th></tr></thead>
            <tbody>
              {projects.map((p) => (
                <tr key={p.id}>
                  <td><Link to={`/projects/${p.id}`}>{p.title}</Link>{p.description && <div className="hint">{p.description}</div>}</td>
                  <td>{p.ontology_title}</td><td>{p.dataset_ids.length}</td><td>{p.role}</td><td>{p.creator_email || "—"}</td><td>{formatDate(p.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <div className="card">
        <h2>Ontologies</h2>
        {ontologies === null ? <div className="empty">Loading…</div> : ontologies.length === 0 ? <div className="empty">No ontologies yet.</div> : (
          <div className="ontology-grid">
            {ontologies.map((o) => <OntologyCard key={o.id} ontology={o} />)}
          </div>
        )}
      </div>
    </div>
  );
}

function OntologyCard({ ontology }: { ontology: Ontology }) {
  const objects = ontology.editor.objects ?? [];
  const classifications = ontology.editor.classifications ?? [];
  return (
    <section className="ontology" aria-label={`Ontology ${ontology.title}`}>
      <h3>{ontology.title}</h3>
      {ontology.description && <p className="hint">{ontology.description}</p>}
      <Legend objects={objects} classifications={classifications} />
    </section>
  );
}

function Legend({ objects, classifications }: { objects: OntologyNode[]; classifications: OntologyNode[] }) {
  return (
    <ul className="legend">
      {objects.map((o, i) => (
        <li key={o.featureNodeHash}>
          <span className="swatch" style={{ background: colourFor(o.featureNodeHash, o.color, i) }} aria-hidden="true" />
          {o.name ?? o.featureNodeHash} <span className="hint">{SHAPE_NAMES[o.shape ?? ""] ?? o.shape}</span>
        </li>
      ))}
      {classifications.map((c) => (
        <li key={c.featureNodeHash}>
          <span className="swatch classification" aria-hidden="true" />
          {c.attributes?.[0]?.name ?? c.featureNodeHash} <span className="hint">classification</span>
        </li>
      ))}
    </ul>
  );
}

function useOntology(id: string | undefined): Ontology | null {
  const [ontology, setOntology] = useState<Ontology | null>(null);
  useEffect(() => {
    if (id) api.get<Ontology>(`/api/v1/ontologies/${id}`).then(setOntology, () => setOntology(null));
  }, [id]);
  return ontology;
}

function ProjectView({ id }: { id: string }) {
  const navigate = useNavigate();
  const [project, setProject] = useState<Project | null>(null);
  const [units, setUnits] = useState<UnitMeta[] | null>(null);
  const [total, setTotal] = useState(0);
  const [status, setStatus] = useState("");
  const [error, setError] = useState<unknown>(null);
  const ontology = useOntology(project?.ontology_id);
  useEffect(() => {
    api.get<Project>(apiPath`/api/v1/projects/${id}`).then(setProject, setError);
  }, [id]);
  useEffect(() => {
    setUnits(null);
    setError(null);
    api.get<{ label_rows: UnitMeta[]; total: number }>(apiPath`/api/v1/projects/${id}/label-rows`, { limit: 1000, label_status: status || undefined })
      .then((r) => { setUnits(r.label_rows); setTotal(r.total); }, setError);
  }, [id, status]);
  return (
    <div className="page">
      <PageHead title={project?.title ?? "Project"} subtitle={project ? `Ontology: ${project.ontology_title} · ${project.dataset_ids.length} dataset(s) · your role: ${project.role}` : undefined}>
        <Link to="/projects">All projects</Link>
      </PageHead>
      <ErrorBanner error={error} />
      {ontology && (
        <div className="card"><h2>Ontology</h2><Legend objects={ontology.editor.objects ?? []} classifications={ontology.editor.classifications ?? []} /></div>
      )}
      <div className="card">
        <div className="row" style={{ justifyContent: "space-between" }}>
          <h2 style={{ margin: 0 }}>Data units</h2>
          <label className="row inline-select">Label status
            <select value={status} onChange={(e) => setStatus(e.target.value)}>
              <option value="">Any</option>
              {["NOT_LABELLED", "LABEL_IN_PROGRESS", "LABELLED", "REVIEW_IN_PROGRESS", "REVIEWED", "REVIEWED_TWICE"].map((s) => <option key={s} value={s}>{s.replace(/_/g, " ").toLowerCase()}</option>)}
            </select>
          </label>
        </div>
        {units === null ? (error ? null : <div className="empty">Loading…</div>) : units.length === 0 ? <div className="empty">No data units.</div> : (
          <>
            <table className="list" aria-label="Data units">
              <thead><tr><th>Title</th><th>Type</th><th>Dataset</th><th>Status</th><th>Last edited</th></tr></thead>
              <tbody>
                {units.map((u) => (
                  <tr key={u.data_hash} className="clickable" tabIndex={0} onClick={() => navigate(`/projects/${id}/units/${u.data_hash}`)}
                    onKeyDown={(e) => { if (e.key === "Enter") navigate(`/projects/${id}/units/${u.data_hash}`); }}>
                    <td><Link to={`/projects/${id}/units/${u.data_hash}`}>{u.data_title}</Link></td>
                    <td>{u.data_type.toLowerCase()}</td><td>{u.dataset_title}</td>
                    <td><StatusBadge status={u.label_status} /></td><td>{formatDate(u.last_edited_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {total > units.length && <p className="hint">Showing the first {units.length.toLocaleString()} of {total.toLocaleString()}.</p>}
          </>
        )}
      </div>
    </div>
  );
}

function LabelViewerPage({ projectId, dataHash }: { projectId: string; dataHash: string }) {
  const [unit, setUnit] = useState<UnitLabels | null>(null);
  const [item, setItem] = useState<Item | null>(null);
  const [project, setProject] = useState<Project | null>(null);
  const [error, setError] = useState<unknown>(null);
  const ontology = useOntology(project?.ontology_id);
  useEffect(() => {
    api.get<Project>(apiPath`/api/v1/projects/${projectId}`).then(setProject, setError);
    api.get<UnitLabels>(apiPath`/api/v1/projects/${projectId}/label-rows/${dataHash}`).then((u) => {
      setUnit(u);
      return api.get<Item>(`/api/v1/items/${u.metadata.backing_item_uuid}`, { signed_urls: true }).then(setItem);
    }).catch(setError);
  }, [projectId, dataHash]);

  const nodes = useMemo(() => {
    const m = new Map<string, OntologyNode>();
    const walk = (n: OntologyNode) => { m.set(n.featureNodeHash, n); n.attributes?.forEach(walk); n.options?.forEach((o) => m.set(o.featureNodeHash, { featureNodeHash: o.featureNodeHash, name: o.label })); };
    ontology?.editor.objects?.forEach(walk);
    ontology?.editor.classifications?.forEach(walk);
    return m;
  }, [ontology]);
  const colours = useMemo(() => {
    const m = new Map<string, string>();
    ontology?.editor.objects?.forEach((o, i) => m.set(o.featureNodeHash, colourFor(o.featureNodeHash, o.color, i)));
    return m;
  }, [ontology]);

  const labels = unit?.label_row?.data_units[dataHash]?.labels;
  return (
    <div className="page wide">
      <PageHead title={unit?.metadata.data_title ?? "…"} subtitle={project ? `${project.title} · ${unit?.metadata.label_status.replace(/_/g, " ").toLowerCase() ?? ""}` : undefined}>
        <Link to={`/projects/${projectId}`}>Back to the project</Link>
      </PageHead>
      <ErrorBanner error={error} />
      {unit && item && (
        <LabelCanvas item={item} meta={unit.metadata} labels={labels} nodes={nodes} colours={colours}
          classificationAnswers={unit.label_row?.classification_answers ?? {}} />
      )}
      {unit && !unit.label_row && <div className="card empty">Nobody has started labelling this file yet.</div>}
    </div>
  );
}

function describeAnswer(answers: unknown, nodes: Map<string, OntologyNode>): string {
  if (Array.isArray(answers)) return answers.map((a: { featureHash?: string; name?: string }) => nodes.get(a.featureHash ?? "")?.name ?? a.name ?? a.featureHash ?? "?").join(", ") || "—";
  return answers === null || answers === undefined ? "—" : String(answers);
}

function LabelCanvas(props: {
  item: Item;
  meta: UnitMeta;
  labels: unknown;
  nodes: Map<string, OntologyNode>;
  colours: Map<string, string>;
  classificationAnswers: NonNullable<UnitLabels["label_row"]>["classification_answers"];
}) {
  const { item, meta, labels, nodes, colours } = props;
  const colour = (o: LabelObject) => o.color ?? colours.get(o.featureHash ?? "") ?? colourFor(o.featureHash);
  const isVideo = meta.data_type === "VIDEO";
  const fps = meta.frames_per_second || Number(item.media.fps) || 25;
  const [frame, setFrame] = useState(0);
  const [size, setSize] = useState<{ w: number; h: number } | null>(meta.width && meta.height ? { w: meta.width, h: meta.height } : null);
  const [hidden, setHidden] = useState<Set<string>>(new Set());
  const video = useRef<HTMLVideoElement>(null);
  const current = frameLabels(labels, frame);
  const frames = labelledFrames(labels);
  const drawn = size ? current.objects.map((o) => ({ o, d: drawObject(o, size.w, size.h) })) : [];

  const step = (n: number) => {
    const v = video.current;
    if (!v) return;
    v.pause();
    const next = Math.max(0, frame + n);
    v.currentTime = next / fps + 1e-4;
    setFrame(next);
  };
  const toggle = (hash: string) => setHidden((old) => { const s = new Set(old); if (s.has(hash)) s.delete(hash); else s.add(hash); return s; });
  const src = item.signed_url;

  return (
    <div className="label-layout">
      <div>
        <div className="label-stage">
          {isVideo ? (
            <video ref={video} src={src ?? undefined} aria-label={item.name} onLoadedMetadata={(e) => size || setSize({ w: e.currentTarget.videoWidth, h: e.currentTarget.videoHeight })}
              onTimeUpdate={(e) => setFrame(Math.floor(e.currentTarget.currentTime * fps + 1e-6))} />
          ) : (
            <img src={src ?? undefined} alt={item.name} onLoad={(e) => size || setSize({ w: e.currentTarget.naturalWidth, h: e.currentTarget.naturalHeight })} />
          )}
          {size && (
            <svg className="label-overlay" viewBox={`0 0 ${size.w} ${size.h}`} preserveAspectRatio="none" role="img" aria-label={`${drawn.filter((x) => x.d).length} labels`} data-testid="label-overlay">
              {drawn.map(({ o, d }, i) => d && !hidden.has(o.objectHash ?? String(i)) && (
                <Shape key={o.objectHash ?? i} d={d} colour={colour(o)} title={labelName(o, nodes)} shape={o.shape ?? ""} scale={Math.max(size.w, size.h) / 800} />
              ))}
            </svg>
          )}
        </div>
        {isVideo && (
          <div className="row" style={{ marginTop: 8 }}>
            <button onClick={() => step(-1)} aria-label="Previous frame">◀ Frame</button>
            <span aria-live="polite" data-testid="frame">Frame {frame}</span>
            <button onClick={() => step(1)} aria-label="Next frame">Frame ▶</button>
            <button onClick={() => video.current && (video.current.paused ? video.current.play() : video.current.pause())}>Play / pause</button>
            {frames.length > 0 && <span className="hint">Labelled frames: {frames.slice(0, 20).join(", ")}{frames.length > 20 ? "…" : ""}</span>}
          </div>
        )}
      </div>
      <aside className="card label-side" aria-label="Labels">
        <h2>Objects <span className="hint">({current.objects.length})</span></h2>
        {current.objects.length === 0 ? <p className="hint">No objects{isVideo ? " on this frame" : ""}.</p> : (
          <ul className="legend">
            {current.objects.map((o, i) => {
              const key = o.objectHash ?? String(i);
              return (
                <li key={key}>
                  <label className="row" style={{ gap: 6 }}>
                    <input type="checkbox" checked={!hidden.has(key)} onChange={() => toggle(key)} aria-label={`Show ${labelName(o, nodes)}`} />
                    <span className="swatch" style={{ background: colour(o) }} aria-hidden="true" />
                    {labelName(o, nodes)} <span className="hint">{SHAPE_NAMES[o.shape ?? ""] ?? o.shape}</span>
                  </label>
                </li>
              );
            })}
          </ul>
        )}
        <h2>Classifications</h2>
        <Classifications frameClassifications={current.classifications} answers={props.classificationAnswers} nodes={nodes} />
        <h2>File</h2>
        <dl className="facts">
          <dt>Type</dt><dd>{meta.data_type.toLowerCase()}</dd>
          <dt>Size</dt><dd>{size ? `${size.w} × ${size.h}` : "—"}</dd>
          {isVideo && <><dt>Frames</dt><dd>{meta.number_of_frames} at {fps} fps</dd></>}
          <dt>Dataset</dt><dd>{meta.dataset_title}</dd>
        </dl>
      </aside>
    </div>
  );
}

function labelName(o: LabelObject, nodes: Map<string, OntologyNode>): string {
  return o.name ?? nodes.get(o.featureHash ?? "")?.name ?? o.featureHash ?? "object";
}

function Classifications(props: {
  frameClassifications: { classificationHash?: string; featureHash?: string; name?: string }[];
  answers: NonNullable<UnitLabels["label_row"]>["classification_answers"];
  nodes: Map<string, OntologyNode>;
}) {
  const rows = props.frameClassifications.map((c, i) => {
    const answer = props.answers[c.classificationHash ?? ""];
    const inner = answer?.classifications?.[0];
    const question = inner?.name ?? props.nodes.get(inner?.featureHash ?? "")?.name ?? c.name ?? props.nodes.get(c.featureHash ?? "")?.attributes?.[0]?.name ?? "classification";
    return <li key={c.classificationHash ?? i}><strong>{question}</strong>: {describeAnswer(inner?.answers, props.nodes)}</li>;
  });
  return rows.length ? <ul className="classifications" aria-label="Classifications">{rows}</ul> : <p className="hint">None.</p>;
}

function Shape({ d, colour, title, shape, scale }: { d: Drawn; colour: string; title: string; shape: string; scale: number }) {
  const stroke = 2.5 * scale;
  const common = { stroke: colour, strokeWidth: stroke, "data-shape": shape, vectorEffect: "non-scaling-stroke" as const };
  switch (d.kind) {
    case "box":
    case "rotated":
    case "polygon":
      return <polygon points={svgPoints(d.points)} fill={colour} fillOpacity={0.15} {...common}><title>{title}</title></polygon>;
    case "polyline":
      return <polyline points={svgPoints(d.points)} fill="none" {...common}><title>{title}</title></polyline>;
    case "point":
      return <circle cx={d.at.x} cy={d.at.y} r={6 * scale} fill={colour} {...common} stroke="#fff"><title>{title}</title></circle>;
    case "bitmask":
      return <path d={d.path} fill={colour} fillOpacity={0.45} data-shape={shape}><title>{title}</title></path>;
  }
}

function StatusBadge({ status }: { status: string }) {
  const tone = status === "NOT_LABELLED" ? "" : status.endsWith("IN_PROGRESS") ? " warning" : " ok";
  return <span className={`badge${tone}`}>{status.replace(/_/g, " ").toLowerCase()}</span>;
}
