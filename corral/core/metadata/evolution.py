"""Which schema changes are allowed, and what changed.

Rules (every violation is reported, each naming its key):

* enum options are append-only: a new definition must keep every old option;
* no key disappears silently: a key (or tombstone) of the old schema must still be there,
  live or as a tombstone;
* a soft-deleted key comes back only with its old type (a restore); another type needs a hard
  delete first, which frees the name for good;
* a tombstone keeps what it remembers: a soft tombstone can become hard (a purge), never change
  its remembered type, and a hard tombstone cannot become soft;
* live keys may change type (the SDK's ``set_scalar``) and gain or lose ``required``;
* a key the schema never had may arrive already deleted (the SDK adds and deletes a key before
  one save): it becomes a tombstone at once, soft with its definition or hard.
"""

from __future__ import annotations

from typing import Any

from corral.core.metadata.schema import Entry, Schema
from corral.errors import ErrorDetail, ValidationFailed


def _check_key(
    key: str, old: Entry, new: Entry | None, problems: list[ErrorDetail], diff: dict[str, Any]
) -> None:
    where = f"keys.{key}"
    if new is None:
        what = "its tombstone" if not old.live else "it"
        problems.append(
            ErrorDetail(
                f"key {key!r} ({old.describe()}) is missing: keys are never dropped silently; keep {what}, "
                'or mark it deleted ("deleted": "soft" or "hard")',
                field=where,
            )
        )
        return
    if old.kind is None:  # hard-deleted before
        if new.deleted == "soft":
            problems.append(
                ErrorDetail(f"key {key!r} was hard-deleted; it cannot become soft-deleted", field=where)
            )
        elif new.live:
            diff["added"].append(key)
        return
    if old.deleted == "soft":
        if new.live:
            if not new.same_type(old):
                problems.append(
                    ErrorDetail(
                        f"key {key!r} was soft-deleted as {old.describe()}; restore it with that type, or "
                        f"hard-delete it first to reuse the name as {new.describe()}",
                        field=where,
                    )
                )
                return
            _enum_options(key, old, new, problems, diff)
            diff["restored"].append(key)
        elif new.deleted == "soft" and not new.same_type(old):
            problems.append(
                ErrorDetail(
                    f"the tombstone of {key!r} remembers {old.describe()}; it cannot "
                    f"be changed to {new.describe()}",
                    field=where,
                )
            )
        elif new.kind is None:
            diff["deleted"].append({"key": key, "hard": True})
        return
    # old is live
    if new.deleted == "soft" and not new.same_type(old):
        problems.append(
            ErrorDetail(
                f"the tombstone of {key!r} must remember its current type {old.describe()}, "
                f"not {new.describe()}",
                field=where,
            )
        )
        return
    if new.deleted == "soft" and old.kind == "enum":
        _enum_options(key, old, new, problems, diff)  # a soft delete cannot drop options either
        diff["enum_options_added"].pop(key, None)
    if not new.live:
        diff["deleted"].append({"key": key, "hard": new.deleted == "hard"})
        return
    if old.kind == "enum" and new.kind == "enum":
        _enum_options(key, old, new, problems, diff)
    elif not new.same_type(old):
        diff["retyped"].append({"key": key, "from": old.describe(), "to": new.describe()})
    elif old.definition() != new.definition():
        diff["changed"].append(key)
    if old.required != new.required:
        diff["required"].append({"key": key, "required": new.required})


def _enum_options(
    key: str, old: Entry, new: Entry, problems: list[ErrorDetail], diff: dict[str, Any]
) -> None:
    if old.kind != "enum" or new.kind != "enum":
        return
    removed = sorted(set(old.values) - set(new.values))
    if removed:
        problems.append(
            ErrorDetail(
                f"enum {key!r} would lose option(s) {', '.join(map(repr, removed))}: enum options can be "
                "added but never removed",
                field=f"keys.{key}.values",
            )
        )
        return
    added = sorted(set(new.values) - set(old.values))
    if added:
        diff["enum_options_added"][key] = added


def evolve(old: Schema, new: Schema) -> dict[str, Any]:
    """The diff from ``old`` to ``new``; ``ValidationFailed`` listing every rule ``new`` breaks."""
    problems: list[ErrorDetail] = []
    diff: dict[str, Any] = {
        "added": [],
        "deleted": [],
        "restored": [],
        "retyped": [],
        "required": [],
        "changed": [],
        "enum_options_added": {},
    }
    for key, old_entry in old.entries.items():
        _check_key(key, old_entry, new.entries.get(key), problems, diff)
    for key, entry in new.entries.items():
        if key in old.entries:
            continue
        if entry.live:
            diff["added"].append(key)
        else:  # added and deleted before a save (the SDK sends it so): a tombstone from the start
            diff["deleted"].append({"key": key, "hard": entry.deleted == "hard", "new": True})
    if problems:
        summary = "; ".join(p.message for p in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ValidationFailed(f"this schema change is not allowed: {summary}{more}", details=problems)
    if old.strict_metadata != new.strict_metadata:
        diff["strict_metadata"] = new.strict_metadata
    return {k: v for k, v in diff.items() if v not in ([], {})}
