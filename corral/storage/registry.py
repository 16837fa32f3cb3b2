"""Provider name → backend, imported lazily so each cloud SDK is an optional extra.

Every backend module has ``open_storage(options, context) -> Storage``.  A missing SDK gives a
``ConfigurationError`` that says which extra to install (as fsspec's registry does).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Protocol, cast

from corral.errors import ConfigurationError
from corral.storage.base import Storage, StorageContext
from corral.storage.options import ProviderOptions

BACKENDS: dict[str, tuple[str, str | None]] = {
    # provider: (module, pip extra that provides its SDK)
    "s3": ("corral.storage.s3", "s3"),
    "azure": ("corral.storage.azure", "azure"),
    "gcs": ("corral.storage.gcs", "gcs"),
    "local": ("corral.storage.local", None),
}


class _BackendModule(Protocol):
    def open_storage(self, options: ProviderOptions, context: StorageContext) -> Storage: ...


def backend_module(provider: str) -> _BackendModule:
    try:
        module_name, extra = BACKENDS[provider]
    except KeyError:
        raise ConfigurationError(f"unknown storage provider {provider!r}; "
                                 f"expected one of {', '.join(BACKENDS)}") from None
    try:
        return cast(_BackendModule, importlib.import_module(module_name))
    except ImportError as exc:
        hint = f"pip install 'corral[{extra}]'" if extra else "reinstall corral"
        raise ConfigurationError(
            f"the {provider} storage backend needs a package that is not installed "
            f"({exc.name or exc}); install it with: {hint}"
        ) from None


def open_storage(options: ProviderOptions, context: StorageContext) -> Storage:
    """A backend bound to the bucket/container/directory ``options`` names."""
    return backend_module(options.provider).open_storage(options, context)


def warm(providers: Iterable[str]) -> list[str]:
    """Import these providers' backends, and let each load what every later open needs
    (``warm()`` in its module, if it has one), before the process serves: the first request that
    signs with a provider would otherwise pay for its SDK's import (about 200-250 ms of CPU each,
    more under load).  Providers whose SDK is missing are skipped (their use says what to install).
    Returns the providers warmed."""
    done = []
    for provider in sorted(set(providers)):
        try:
            module = backend_module(provider)
        except ConfigurationError:
            continue
        warm_one = getattr(module, "warm", None)
        if warm_one is not None:
            warm_one()
        done.append(provider)
    return done
