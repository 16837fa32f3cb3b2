"""Route dependencies never hand over to the thread pool: FastAPI runs a plain-function dependency
in a worker thread, a round trip through the pool on every request (for ``Ctx``, every route);
corral's dependencies do no I/O, so each is a coroutine function (docs/performance.md,
"Dependencies without a thread")."""

from __future__ import annotations

import inspect
from typing import Any

from tests.api.test_query_params import _routes


def _dependencies(dependant: Any) -> list[Any]:
    out = []
    for sub in dependant.dependencies:
        out.append(sub.call)
        out += _dependencies(sub)
    return out


def test_every_route_dependency_is_a_coroutine_function(app) -> None:  # type: ignore[no-untyped-def]
    seen: dict[str, Any] = {}
    for route in _routes(app.routes):
        for call in _dependencies(route.dependant):
            seen[f"{call.__module__}.{call.__qualname__}"] = call
    assert "corral.api.deps.get_ctx" in seen and "corral.api.deps.authenticate" in seen
    plain = sorted(name for name, call in seen.items() if not inspect.iscoroutinefunction(call))
    assert plain == [], f"dependencies run in the thread pool on every request: {plain}"
