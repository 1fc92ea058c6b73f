"""Is the cluster reachable? One small monitor per Kafka client, fed by the client.

A client reports every sign of life (records fetched, a commit or a delivery
acknowledged, a periodic statistics report that lists a broker as up) with
``ok()``, and every connection problem with ``error(text)``. The monitor keeps
the time of the last sign of life and the last error, so readiness can say
"unreachable since ..." without asking the network itself.

Client noise is summarised here too: the first occurrence of each kind of
error is logged at WARNING, repeats within ``quiet_s`` are only counted and
reported in one line when the quiet period ends (a broker restart otherwise
prints dozens of reconnect lines).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
_client_log = logging.getLogger("streamfer.streams.client_library")  # the library's own lines

Clock = Callable[[], float]
_QUIET_S = 30.0
# librdkafka error codes that mean "cannot reach / talk to the cluster" (negative: local)
_CONNECTION_CODES = frozenset({-195, -187, -193, -192, -185, -169})  # transport, all brokers
# down, resolve, timed out (network), timed out (request), authentication
# ... that mean "this topic or partition is not there": the broker's, the local ones
_TOPIC_CODES = frozenset({3, -188, -190})


class Repeats:
    """Which lines to show: the first of each kind, then nothing of that kind for
    ``quiet_s``; the next one after that comes with how many were held back."""

    def __init__(self, quiet_s: float = _QUIET_S, clock: Clock = time.monotonic) -> None:
        self._quiet_s = quiet_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[object, tuple[float, int]] = {}  # kind -> (first seen, count)

    def note(self, kind: object) -> tuple[bool, int, float]:
        """(show this one?, lines of this kind in the last period, that period in s)."""
        now = self._clock()
        with self._lock:
            first, count = self._seen.get(kind, (now, 0))
            if count and now - first < self._quiet_s:
                self._seen[kind] = (first, count + 1)
                return False, 0, 0.0
            self._seen[kind] = (now, 1)
        return True, count, now - first


class LibraryNoise(logging.Filter):
    """On a client library's loggers: WARNING and ERROR lines are summarised as
    :class:`Repeats` says (kafka-python logs every failed reconnect, several lines a
    second while a broker is down). A line's kind is its logger and its format string,
    so lines that differ only in a port or a node id count as one."""

    def __init__(self, quiet_s: float = _QUIET_S, clock: Clock = time.monotonic) -> None:
        super().__init__()
        self._repeats = Repeats(quiet_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        show, count, span = self._repeats.note((record.name, str(record.msg)))
        if show and count > 1:
            record.msg = f"{record.msg} (and {count - 1} more like it in the last {span:.0f} s)"
        return show


class ConnectionMonitor:
    """Last sign of life and last error of one client (thread-safe, cheap to feed)."""

    def __init__(self, name: str, *, quiet_s: float = _QUIET_S, clock: Clock = time.monotonic):
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self.last_ok: float = clock()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_unknown_topic_at: float | None = None  # an unknown topic/partition error
        self._repeats = Repeats(quiet_s, clock)

    # -- fed by the client -------------------------------------------------------------
    def ok(self) -> None:
        """A successful exchange with the cluster."""
        self.last_ok = self._clock()  # one store: no lock needed

    def error(self, text: str, kind: str | None = None, connection: bool = True) -> None:
        """A problem reported by the client; ``connection``: it says the cluster is out of reach."""
        now = self._clock()
        if connection:
            with self._lock:
                self.last_error, self.last_error_at = text, now
        show, count, span = self._repeats.note(kind or text)
        if not show:
            return
        if count > 1:
            log.warning("%s | %s (%d times in %.0f s)", self.name, kind or text, count, span)
        log.warning("%s | %s", self.name, text)

    def on_error(self, err: Any) -> None:
        """librdkafka's ``error_cb``: a KafkaError."""
        try:
            code = err.code()
            text = f"{err.name()}: {err.str()}"
        except AttributeError:
            code, text = None, str(err)
        if code in _TOPIC_CODES:  # e.g. the subscribed topic was deleted (librdkafka keeps
            # its partitions assigned and only reports this, until its next metadata refresh)
            self.unknown_topic()
        self.error(
            text,
            kind=getattr(err, "name", lambda: text)(),
            connection=code in _CONNECTION_CODES or code is None,
        )

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's ``stats_cb``: any broker in state UP is a sign of life."""
        try:
            brokers = json.loads(stats_json).get("brokers", {})
        except ValueError:
            return
        if any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers.values()):
            self.ok()

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """librdkafka's ``logger`` (it calls ``log(level, fmt, facility, name, text)``).

        Connection failures (facility FAIL) repeat what ``error_cb`` reports: DEBUG.
        Other warnings and errors are summarised like errors; the rest is DEBUG.
        """
        facility = str(args[0]) if args else ""
        if level >= logging.WARNING and facility != "FAIL":
            self.error(fmt % args if args else fmt, kind=facility, connection=False)
        else:
            _client_log.debug(fmt, *args)

    # -- read by readiness ---------------------------------------------------------------
    def unknown_topic(self) -> None:
        """The client found a topic or partition it uses unknown to the cluster."""
        self.last_unknown_topic_at = self._clock()

    def unknown_topic_within(self, seconds: float) -> bool:
        """Whether the client reported a topic or partition unknown in the last ``seconds``."""
        at = self.last_unknown_topic_at
        return at is not None and self._clock() - at <= seconds

    def unreachable_s(self) -> float:
        """Seconds since the last sign of life, if an error came after it; else 0."""
        last_err = self.last_error_at
        if last_err is None or last_err < self.last_ok:
            return 0.0
        return max(0.0, self._clock() - self.last_ok)
