"""Structured logging: one JSON object per line (or a readable console format).

Never pass secrets (tokens, keys, credentials, Authorization headers) to a logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message", "asctime", "color_message",  # uvicorn adds an ANSI-coloured copy of msg
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """One readable line per record: ``12:00:01 info    GET /api/v1/me 200 3.1 ms  user=…`` for a
    request (the access log), ``12:00:01 info    corral.worker: worker started  owner=…`` otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        if record.name == "corral.access" and {"method", "path", "status", "duration_ms"} <= set(fields):
            head = (f"{fields.pop('method')} {fields.pop('path')} {fields.pop('status')} "
                    f"{fields.pop('duration_ms')} ms")
        else:
            head = f"{record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        line = f"{when} {record.levelname.lower():7} {head}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "info", fmt: str = "console") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # corral logs one line per request itself (without headers or query secrets).
    logging.getLogger("uvicorn.access").disabled = True
    # Cloud SDKs and HTTP clients log headers, bodies and full URLs (SAS tokens, signed-URL
    # signatures, assumed-role secrets) below WARNING: keep them out, whatever corral's level is.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Alembic announces its SQLite dialect at every start; only --log-level debug shows it.
    logging.getLogger("alembic").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)


QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "azure", "google", "google.auth",
                 "httpcore", "httpx", "httpcore2", "httpx2")
