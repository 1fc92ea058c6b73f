"""Log output of the ``streamfer`` command: level, text or JSON lines, on stderr.

JSON lines carry ``ts``, ``level``, ``logger`` and ``message``, and the fields of
:data:`FIELDS` when the record has them (``log.warning(..., extra={"topic": ...})``);
an exception's traceback goes in ``exc``.

kafka-python's protocol logger never goes below INFO: at DEBUG it logs every request
with its bytes, a SASL PLAIN login's password among them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LEVELS = ("debug", "info", "warning", "error")
FORMATS: tuple[LogFormat, ...] = ("text", "json")
FIELDS = ("stream", "topic", "partition", "offset", "reason")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_PROTOCOL_LOGGER = "kafka.protocol"


def level_of(verbose: int = 0, quiet: bool = False, log_level: str | None = None) -> int:
    """``--log-level`` when given, else ``-q`` (errors only), else ``-v`` (info), ``-vv``
    (debug), else warnings."""
    if log_level:
        return logging.getLevelNamesMapping()[log_level.upper()]
    if quiet:
        return logging.ERROR
    return logging.WARNING - 10 * min(verbose, 2)


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


_current: tuple[int, LogFormat] = (logging.WARNING, "text")


def configure(level: int, fmt: LogFormat = "text") -> None:
    """Send log records of ``level`` and above to stderr as ``fmt``; idempotent."""
    global _current
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger(_PROTOCOL_LOGGER).setLevel(max(level, logging.INFO))
    _current = (level, fmt)


def cli_args() -> list[str]:
    """The options that give a child ``streamfer`` process this process's log settings."""
    level, fmt = _current
    return ["--log-level", logging.getLevelName(level).lower(), "--log-format", fmt]
