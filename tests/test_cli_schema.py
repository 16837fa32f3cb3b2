"""``corral schema ...`` against a live server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from corral.cli import cli


@pytest.fixture
def run(monkeypatch, tmp_path, live_server, make_user):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CORRAL_CONFIG_DIR", str(tmp_path / "config"))
    alice = make_user("alice@x.io")
    env = {"CORRAL_URL": live_server, "CORRAL_TOKEN": alice.token}
    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(cli, list(args), env=env, input=input)


def test_schema_lifecycle(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run("schema", "show")
    assert r.exit_code == 0 and "version 0" in r.output and "no keys yet" in r.output

    doc = {"keys": {"captured_at": {"type": "datetime"}, "camera": {"type": "string", "required": True},
                    "weather": {"type": "enum", "values": ["rain", "sunny"]}}}
    (tmp_path / "schema.json").write_text(json.dumps(doc))
    r = run("schema", "import", str(tmp_path / "schema.json"), "--dry-run")
    assert r.exit_code == 0 and "Would save version 1" in r.output
    r = run("schema", "import", str(tmp_path / "schema.json"))
    assert r.exit_code == 0 and "Saved version 1" in r.output and '"camera"' in r.output

    r = run("schema", "set", "weather", "enum", "--values", "snow")
    assert r.exit_code == 0 and 'enum_options_added: {"weather": ["snow"]}' in r.output
    r = run("schema", "set", "score", "number")
    assert r.exit_code == 0 and "Saved version 3" in r.output
    r = run("schema", "set", "score", "varchar")
    assert r.exit_code == 0 and '"from": "number", "to": "varchar"' in r.output
    r = run("schema", "delete", "score")
    assert r.exit_code == 0 and '"hard": false' in r.output
    r = run("schema", "restore", "score")
    assert r.exit_code == 0 and 'restored: ["score"]' in r.output
    r = run("schema", "delete", "score", "--hard")
    assert r.exit_code == 0
    r = run("schema", "restore", "score")
    assert r.exit_code == 1 and "is not soft-deleted" in r.output

    r = run("schema", "show")
    assert "version 7" in r.output and "camera" in r.output and "varchar  [required]" in r.output
    assert "enum(rain, snow, sunny)" in r.output and "score" in r.output and "(hard-deleted)" in r.output
    r = run("schema", "show", "--version", "1")
    assert "version 1" in r.output and "enum(rain, sunny)" in r.output

    r = run("schema", "history")
    assert r.exit_code == 0 and r.output.splitlines()[0].startswith("v7") and "alice@x.io" in r.output

    out = tmp_path / "export.json"
    r = run("schema", "export", "-o", str(out))
    exported = json.loads(out.read_text())
    assert exported["version"] == 7 and exported["keys"]["weather"]["values"] == ["rain", "snow", "sunny"]
    r = run("schema", "export", "--format", "encord")
    assert json.loads(r.output)["score"] == {"ty": "tombstone", "deleted_ty": None}

    # Importing an export that is out of date is refused (someone saved in between).
    run("schema", "set", "extra", "text")
    r = run("schema", "import", str(out))
    assert r.exit_code == 1 and "changed since version 7 (it is now at version 8)" in r.output and "409" in r.output


def test_refused_import_explains(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.json").write_text(json.dumps({"keys": {"w": {"type": "enum", "values": ["a", "b"]}}}))
    (tmp_path / "b.json").write_text(json.dumps({"keys": {"w": {"type": "enum", "values": ["a"]}}}))
    (tmp_path / "broken.json").write_text("{not json")
    assert run("schema", "import", str(tmp_path / "a.json")).exit_code == 0
    r = run("schema", "import", str(tmp_path / "b.json"))
    assert r.exit_code == 1 and "enum 'w' would lose option(s) 'b'" in r.output
    r = run("schema", "import", str(tmp_path / "broken.json"))
    assert r.exit_code == 1 and "not valid JSON (line 1, column 2" in r.output


def test_validate_files(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    schema = {"keys": {"score": {"type": "number"}, "weather": {"type": "enum", "values": ["rain"]}}}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    run("schema", "import", str(tmp_path / "s.json"))
    (tmp_path / "m.jsonl").write_text('{"score": 1, "weather": "rain"}\n{"score": "x"}\n')
    r = run("schema", "validate", str(tmp_path / "m.jsonl"))
    assert r.exit_code == 1
    assert "line 2: invalid clientMetadata: 'score' = 'x' is not a number" in r.output and "1 valid, 1 invalid" in r.output
    (tmp_path / "m.csv").write_text("score,weather\n1.5,rain\n2,hail\n")
    r = run("schema", "validate", str(tmp_path / "m.csv"))
    assert r.exit_code == 1 and "line 3: invalid clientMetadata: 'weather' = 'hail' is not one of the enum options (rain)" in r.output
    (tmp_path / "ok.json").write_text('[{"score": 2}]')
    r = run("schema", "validate", str(tmp_path / "ok.json"))
    assert r.exit_code == 0 and "1 valid, 0 invalid" in r.output


def test_set_keeps_what_it_does_not_mention(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = {"keys": {"camera": {"type": "varchar", "max_length": 200, "required": True}}}
    (tmp_path / "s.json").write_text(json.dumps(doc))
    run("schema", "import", str(tmp_path / "s.json"))
    r = run("schema", "set", "camera", "varchar", "--optional")
    assert r.exit_code == 0, r.output
    r = run("schema", "export")
    assert json.loads(r.output)["keys"]["camera"] == {"type": "varchar", "max_length": 200}


def test_validate_large_files_and_stdin_csv(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s.json").write_text(json.dumps({"keys": {"n": {"type": "number"}}}))
    run("schema", "import", str(tmp_path / "s.json"))
    lines = ['{"n": 1}'] * 12_000 + ['{"n": "bad"}']
    (tmp_path / "big.jsonl").write_text("\n".join(lines) + "\n")
    r = run("schema", "validate", str(tmp_path / "big.jsonl"))
    assert r.exit_code == 1 and "line 12001: invalid clientMetadata" in r.output
    assert "12000 valid, 1 invalid" in r.output
    r = run("schema", "validate", "-", "--csv", input="n\n 3 \nx\n")
    assert r.exit_code == 1 and "line 3: invalid clientMetadata: 'n' = 'x' is not a number" in r.output
