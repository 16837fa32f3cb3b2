"""Every API route parses its body with corral's JSON codec (``CorralRoute``).

A router created without ``route_class=CorralRoute`` would take bodies through FastAPI's own
JSON parsing and so bypass the codec's limits (depth, 64-bit integers, NaN, surrogates, NUL).
"""

from __future__ import annotations

from fastapi.routing import APIRoute

from corral.api.parsing import CorralRoute

API_PREFIXES = ("/api/v1", "/v2/", "/public")


def test_every_api_route_is_a_corral_route(app) -> None:  # type: ignore[no-untyped-def]
    plain = [
        f"{sorted(route.methods)} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute) and route.path.startswith(API_PREFIXES)
        and not isinstance(route, CorralRoute)
    ]
    assert plain == []
