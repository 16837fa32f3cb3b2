"""A store that answers garbage is a store error, never a crash.

Backends translate what their SDK raises into the ``OSError`` family (``corral.storage.base``).
What a broken or hostile endpoint can make an SDK raise is open-ended: an XML or JSON parser
error, a ``KeyError`` for a missing field, a decoding error.  ``guard`` wraps a backend so that
anything it raises outside that contract becomes ``StoreGarbled`` (an ``OSError``): the scope
guard maps it to ``502 storage_error`` and ``integration check`` reports it as a failed step.

Argument errors a backend raises on purpose (``ValueError``, ``OutOfScope``) and corral's own
errors pass through unchanged.  The message names only the exception's type: the text of an SDK
error can quote URLs, and signed URLs carry credentials.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

from corral.errors import CorralError
from corral.storage.base import OutOfScope, Storage

log = logging.getLogger("corral.storage")


class StoreGarbled(OSError):
    """The store answered something corral could not understand."""


def _raised_by_corral(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("corral.")


def _passes(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, CorralError, OutOfScope)):
        return True
    # A backend's own argument check passes; an SDK's ValueError about a reply (botocore's
    # "Invalid timestamp") is garbage.
    return isinstance(exc, ValueError) and _raised_by_corral(exc)


def _garbled(exc: BaseException, operation: str) -> StoreGarbled:
    kind = type(exc).__name__
    log.warning("store answered garbage", extra={"operation": operation, "error_type": kind})
    return StoreGarbled(f"the store answered something corral could not understand ({kind} in {operation})")


def _call(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if _passes(exc):
                raise
            raise _garbled(exc, name) from exc

    return call


def _iterate(fn: Callable[..., Iterator[Any]], name: str) -> Callable[..., Iterator[Any]]:
    @functools.wraps(fn)
    def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from fn(*args, **kwargs)
        except Exception as exc:
            if _passes(exc):
                raise
            raise _garbled(exc, name) from exc

    return iterate


class _Guarded:
    def __init__(self, inner: Storage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("__"):
            return attr
        wrapped = _iterate(attr, name) if name == "iter_prefix" else _call(attr, name)
        # Kept, so the next look-up does not come here: wrapping a method per call (functools.wraps)
        # was a tenth of a strict client-only import's time (key_for_url once per file).
        self.__dict__[name] = wrapped
        return wrapped


def guard(storage: Storage) -> Storage:
    """``storage`` with every call held to the ``OSError`` contract (see the module docstring)."""
    return cast(Storage, _Guarded(storage))
