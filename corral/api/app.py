"""``create_app(settings)``: build an ASGI app; any number can coexist (tests do this)."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from corral._version import __version__
from corral.api import openapi
from corral.api.deps import AppContext
from corral.api.docs import install_docs
from corral.api.errors import install_error_handlers
from corral.api.limits import RequestGuard
from corral.api.middleware import ConcurrencyLimitMiddleware, RequestLogMiddleware
from corral.api.routes import (
    datasets,
    encord_active,
    encord_datasets,
    encord_index,
    encord_labels,
    encord_metadata,
    encord_rpc,
    encord_storage,
    encord_storage_changes,
    encord_tags,
    encord_v2,
    folders,
    health,
    imports,
    index,
    index_map,
    index_saved,
    integrations,
    items,
    jobs,
    labels,
    local_media,
    me,
    metadata_schema,
    project_collections,
    project_members,
    sessions,
    tags,
    tokens,
)
from corral.api.web_ui import install as install_web_ui
from corral.core import identity
from corral.db import migrate
from corral.db.engine import Database, create_database
from corral.errors import ConfigurationError
from corral.jobs import doorbell
from corral.jobs.tasks import TaskRegistry, registry
from corral.jobs.worker import Worker
from corral.settings import Settings

DESCRIPTION = """
corral's native REST API. Authenticate every request (except `/healthz`) with
`Authorization: Bearer <token>` (`corral token create EMAIL`; here: **Authorize**, scheme
`bearer`) or by signing it with your Ed25519 SSH key (scheme `sshSignature`, which the Encord
SDK and the `corral` CLI compute; Swagger UI cannot). Errors always have the shape
`{"ok": false, "status", "code", "message", "errors": [{"message", "field"?}]}`.

The Encord-compatible families live under `/v2/public` and `/public`.
"""


def check_schema(db: Database) -> None:
    current, head = migrate.current_revision(db), migrate.head_revision()
    if current != head:
        raise ConfigurationError(
            f"the database schema is at revision {current or 'none'} but this corral needs {head}: "
            "run `corral migrate`"
        )


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    run_worker: bool = False,
    tasks: TaskRegistry = registry,
    worker_processes: int = 0,
) -> FastAPI:
    settings = settings or Settings()
    owns_db = db is None
    database = db or create_database(settings)
    ctx = AppContext(settings=settings, db=database, tasks=tasks)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(check_schema, database)
        # The thread pool of run_in_threadpool: a few threads, not anyio's default 40 (see api_threads).
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = settings.api_threads
        # every thread taken: requests wait for one, so pages are not read ahead (PageAhead)
        ctx.pages_ahead.busy = lambda: limiter.borrowed_tokens >= limiter.total_tokens
        # Long-polls here wake when a job ends in any process of the deployment (the job workers
        # ring: corral.jobs.doorbell); the embedded worker (run_worker) listens for work too.
        database.doorbell.open()
        # Another process changed users or tokens (a revocation): forget what this one cached.
        stop_forgetting = database.doorbell.chime(doorbell.AUTH).subscribe(identity.forget_cached)
        thread: threading.Thread | None = None
        if run_worker:
            ctx.worker = Worker(database, settings, tasks)
            thread = threading.Thread(target=ctx.worker.run, name="corral-worker", daemon=True)
            thread.start()
        supervisor = None
        if run_worker and worker_processes:
            from corral.jobs.supervisor import WorkerSupervisor

            supervisor = WorkerSupervisor(settings, worker_processes)
            supervisor.start()
        try:
            yield
        finally:
            if supervisor is not None:
                await run_in_threadpool(supervisor.stop)
            if ctx.worker is not None and thread is not None:
                ctx.worker.stop()
                await run_in_threadpool(thread.join, ctx.worker.shutdown_grace_seconds + 5)
                ctx.worker = None
            ctx.pages_ahead.close()
            stop_forgetting()
            database.doorbell.close()
            if owns_db:
                database.dispose()

    app = FastAPI(
        title="corral",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # install_docs: Swagger UI from the package, not a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.corral = ctx
    install_docs(app, "/api/openapi.json")
    install_error_handlers(app)
    openapi.install(app, {("/api/v1/jobs", "get", "kind"): ctx.tasks.names})
    app.add_middleware(RequestGuard, ctx=ctx)  # inside the log, so refusals are logged too
    app.add_middleware(ConcurrencyLimitMiddleware, limit=settings.max_concurrent_requests)
    app.add_middleware(RequestLogMiddleware)
    for router in (health.router, me.router, tokens.router, jobs.router, integrations.router,
                   local_media.router,
                   metadata_schema.router, folders.router, items.router, items.upload_router,
                   imports.import_router, index.router, index_map.router, index_saved.router,
                   datasets.router, datasets.admin_router, labels.ontology_router, labels.project_router,
                   project_members.router, tags.router, project_collections.router,
                   encord_v2.router, integrations.v2_router, encord_metadata.router, encord_labels.router,
                   encord_tags.router,
                   encord_rpc.router, encord_storage.router, encord_storage.presigned_router,
                   encord_storage_changes.router,
                   encord_datasets.router, encord_index.router, encord_active.router,
                   encord_v2.unsupported_router):  # last: it answers whatever the others do not
        app.include_router(router)
    app.include_router(sessions.router)
    install_web_ui(app)  # last: the API answers every path it knows first
    gate_included_routers(app)
    return app


def gate_included_routers(app: FastAPI) -> int:
    """Let each included router refuse at once a path outside its prefix; returns how many it gated.

    FastAPI (0.16x) matches a request by asking every included router in turn, and each walks all of
    its routes with per-route bookkeeping: about 2 ms for ``/api/v1/items/{id}``, twice per request.
    Every route of a router starts with the router's common path prefix, so a path that does not is
    never one of its routes: refusing it with one ``startswith`` changes no outcome.  Routers whose
    routes share no prefix, or a FastAPI whose routing is shaped otherwise, are left alone.
    """
    gated = 0
    for route in app.router.routes:
        original, context = getattr(route, "original_router", None), getattr(route, "include_context", None)
        found = [getattr(r, "path", None) for r in getattr(original, "routes", [])]
        paths = [p for p in found if isinstance(p, str)]
        if context is None or not paths or len(paths) != len(found):
            continue
        prefix = str(getattr(context, "prefix", "")) + os.path.commonprefix(paths).split("{")[0]
        if len(prefix) <= 1:
            continue
        inner = route.matches

        def matches(scope: Scope, inner: Any = inner, prefix: str = prefix) -> tuple[Match, Scope]:
            if scope.get("root_path") or scope["path"].startswith(prefix):
                return inner(scope)  # type: ignore[no-any-return]
            return Match.NONE, {}

        object.__setattr__(route, "matches", matches)
        gated += 1
    return gated


def app_from_environment() -> FastAPI:
    """The app of one of `corral serve --workers N`'s API processes (uvicorn's factory): the
    settings `serve` found (it passes its flags and data directory on in the environment, and the
    same discovery reads the same configuration files); the job workers run in their own processes."""
    from corral.logs import configure_logging
    from corral.runtime import die_with_parent, tune_gc, warm_index, warm_storage
    from corral.settings import discover

    die_with_parent()
    settings = discover().settings
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    warm_storage(app.state.corral.db)
    warm_index(app.state.corral.db)
    tune_gc()  # the app is built: the collector need not walk it again
    return app
