"""The local-roots policy: which server directories a ``local`` integration may be rooted at.

An organisation admin chooses a local integration's ``root``, and corral then serves the files
under it to anyone holding a signed link.  Without a policy, an admin could root an integration
at ``/`` and read the server's database (every organisation's data) and secret key (which
decrypts every stored credential).  So a root must lie under a directory the **operator** lists
in ``CORRAL_LOCAL_ROOTS``, and it may never contain, or sit inside, a protected directory (the
data directory and the SQLite database's directory), even when the operator lists one of them.
The single exception is corral's own upload directory of the integration's organisation
(``DATA_DIR/uploads/<org id>``), which corral creates itself.

Both sides are compared after resolving symlinks and ``..`` (``realpath``).  The check runs when
an integration is saved (a 400 naming ``root``) and again on **every** access to the directory
(``LocalStorage`` calls :meth:`LocalRootPolicy.check` before opening it), so a setting narrowed
since, or a symlink swapped in, is caught at use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SETTING = "CORRAL_LOCAL_ROOTS"


class LocalRootRefused(PermissionError):
    """A local root outside what the operator allows (the message says which rule)."""


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, parent: Path) -> bool:
    return path == parent or path.is_relative_to(parent)


@dataclass(frozen=True)
class LocalRootPolicy:
    """Allowed parents, protected directories and the organisation's own upload directory."""

    allowed: tuple[str, ...] = ()
    protected: tuple[str, ...] = ()
    own_uploads: str | None = None

    @staticmethod
    def split(setting: str) -> tuple[str, ...]:
        """The directories of a ``CORRAL_LOCAL_ROOTS`` value (separated by ``:``)."""
        return tuple(p for p in (part.strip() for part in setting.split(":")) if p)

    def check(self, root: str | Path, *, show_allowed: bool = False) -> Path:
        """The resolved root, or ``LocalRootRefused``.

        ``show_allowed`` lists the operator's directories in the message (for the admin saving an
        integration; members using one see only the rule).
        """
        real = _real(root)
        if self.own_uploads is not None and _within(real, _real(self.own_uploads)):
            return real
        for protected in self.protected:
            p = _real(protected)
            if _within(real, p) or _within(p, real):
                raise LocalRootRefused(
                    f"root {root} is refused: it contains or sits inside the server's own data "
                    "(its data directory or database), which no integration may expose"
                )
        if not any(_within(real, _real(parent)) for parent in self.allowed):
            if not self.allowed:
                where = f"the server's operator allows none ({SETTING} is empty)"
            elif show_allowed:
                where = f"allowed: {', '.join(self.allowed)} ({SETTING})"
            else:
                where = f"ask the server's operator ({SETTING})"
            raise LocalRootRefused(
                f"root {root} is not under a directory the server's operator allows for local "
                f"integrations; {where}"
            )
        return real
