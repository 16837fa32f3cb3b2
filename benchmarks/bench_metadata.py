"""Metadata validation throughput: 1,000,000 dicts of 10 keys against a 50-key schema.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_metadata [--items 1000000] [--repeat 3]

The schema has 50 keys cycling through varchar, text, number, boolean, datetime, uuid and enum;
each item carries 10 of them (a different 10 per item), with realistic values: datetimes with
``Z`` and with other offsets, UUIDs in upper and lower case, ints and floats.  One core, one
thread.  Figures are medians of ``--repeat`` runs over the same items.

Baselines, in the same session: a plain dict copy of each item (the floor: what any validator
must at least do), and pydantic 2 validating the same items with a model of 50 optional typed
fields (what a generic validation library gives).  A separate line adds one 512-dim embedding to
every item.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from corral.core.metadata.schema import from_native
from corral.core.metadata.validation import Validator

KINDS = ["varchar", "text", "number", "boolean", "datetime", "uuid", "enum"]
OPTIONS = ["clear", "cloudy", "rain", "snow", "fog", "night"]


def schema_doc(n_keys: int = 50) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for i in range(n_keys):
        kind = KINDS[i % len(KINDS)]
        entry: dict[str, Any] = {"type": kind}
        if kind == "enum":
            entry["values"] = OPTIONS
        if kind == "varchar":
            entry["max_length"] = 256
        keys[f"team{i % 5}.key{i}"] = entry
    return {"keys": keys}


def _value(kind: str, i: int) -> Any:
    if kind == "varchar":
        return f"camera-{i % 977}"
    if kind == "text":
        return f"free text note number {i} about the scene"
    if kind == "number":
        return i * 0.25 if i % 2 else i
    if kind == "boolean":
        return i % 3 == 0
    if kind == "datetime":
        return f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00" + (
            "Z" if i % 4 else "+02:00"
        )
    if kind == "uuid":
        u = str(uuid.UUID(int=i * 7919 + 1))
        return u.upper() if i % 5 == 0 else u
    return OPTIONS[i % len(OPTIONS)]


def make_items(n: int, doc: dict[str, Any], per_item: int = 10) -> list[dict[str, Any]]:
    names = list(doc["keys"])
    kinds = [doc["keys"][k]["type"] for k in names]
    items = []
    for i in range(n):
        item = {}
        for j in range(per_item):
            idx = (i * 3 + j * 5) % len(names)
            item[names[idx]] = _value(kinds[idx], i + j)
        items.append(item)
    return items


def pydantic_model(doc: dict[str, Any]) -> type[BaseModel]:
    types: dict[str, Any] = {
        "varchar": str,
        "text": str,
        "number": float,
        "boolean": bool,
        "datetime": datetime,
        "uuid": uuid.UUID,
        "enum": Literal[tuple(OPTIONS)],
    }  # type: ignore[valid-type]
    fields: dict[str, Any] = {}
    for key, entry in doc["keys"].items():
        annotation = types[entry["type"]]
        if entry["type"] == "varchar":
            fields[key.replace(".", "_")] = (annotation | None, Field(None, alias=key, max_length=256))
        else:
            fields[key.replace(".", "_")] = (annotation | None, Field(None, alias=key))
    return create_model("Meta", __config__=ConfigDict(extra="allow", strict=False), **fields)  # type: ignore[call-overload, no-any-return]


def rate(fn: Callable[[dict[str, Any]], object], items: list[dict[str, Any]], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        runs.append(len(items) / (time.perf_counter() - start))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    doc = schema_doc()
    validator = Validator(from_native(doc))
    print(f"building {args.items:,} items of 10 keys (50-key schema)...", flush=True)
    items = make_items(args.items, doc)
    bad = sum(1 for item in items[:10000] if validator.validate(item)[1])
    assert bad == 0, f"{bad} generated items are invalid"

    model = pydantic_model(doc)
    floor = rate(dict, items, args.repeat)
    ours = rate(validator.validate, items, args.repeat)
    sample = items[: max(1, args.items // 10)]
    theirs = rate(model.model_validate, sample, args.repeat)
    print(f"{'validator':<34} {'items/s':>12} {'vs corral':>10}")
    print(f"{'dict copy (floor)':<34} {floor:>12,.0f} {floor / ours:>9.2f}x")
    print(f"{'corral Validator':<34} {ours:>12,.0f} {1:>9.2f}x")
    print(f"{'pydantic 2 model (1/10 of items)':<34} {theirs:>12,.0f} {theirs / ours:>9.2f}x")

    emb_doc = {"keys": {**doc["keys"], "clip": {"type": "embedding", "size": 512}}}
    emb_validator = Validator(from_native(emb_doc))
    vector = [0.001 * i for i in range(512)]
    emb_items = [{**item, "clip": vector} for item in items[:50_000]]
    with_embedding = rate(emb_validator.validate, emb_items, args.repeat)
    print(f"{'corral, + a 512-dim embedding':<34} {with_embedding:>12,.0f}")


if __name__ == "__main__":
    main()
