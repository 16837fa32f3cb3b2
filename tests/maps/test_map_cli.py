"""``corral map build`` (waits with progress, exits 1 on failure) and ``corral map status``,
against a live server with its worker."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.datasets.conftest import _runner, server  # noqa: F401  (the live server fixture)
from tests.maps.data import blobs
from tests.maps.test_map_api import DIM, register
from tests.vectors.test_api import setup_org


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_map_build_and_status_from_the_cli(server, make_user, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("a@x.io")
    with httpx.Client(base_url=server, timeout=60) as http:
        setup_org(http, alice)
        register(http, alice, blobs(30, DIM)[0])
    run = _runner(server, alice)
    r = run("map", "status", "clip")
    assert r.exit_code == 0 and "no map yet (30 vectors)" in r.output, r.output
    r = run("map", "build", "clip", "--method", "pca")
    assert r.exit_code == 0, r.output
    assert "PCA, 30 points" in r.output
    r = run("map", "status", "clip", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["map"]["points"] == 30 and json.loads(r.output)["unmapped"] == 0
    r = run("map", "build", "clip", "--method", "umap")  # 30 vectors: too few for UMAP, a 400 naming method
    assert r.exit_code != 0 and "UMAP needs at least 50" in r.output, r.output
    r = run("map", "build", "nope")
    assert r.exit_code != 0 and "not an embedding key" in r.output, r.output
