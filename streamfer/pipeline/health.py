"""``/metrics``, ``/healthz`` and ``/readyz`` of one streamfer process on one HTTP port.

:class:`HealthState` is what the components talk to:

- liveness: each long-running thread registers a :class:`Heartbeat` and calls
  ``beat()`` in its loop (also when idle, e.g. on every queue-get timeout). A
  heartbeat older than its ``max_age_s`` makes ``/healthz`` answer 503 naming it;
  a component that stops on purpose calls ``close()`` on its heartbeat.
- readiness: named conditions, by default ``engines`` (activated) and ``partitions``
  (the group's assignment known, maybe empty), either set with ``set_ready(name,
  bool)`` or read at every check from ``watch(name, fn)``; and named problems raised
  with ``set_problem(name, True)`` (e.g. ``topic_missing:<stream>:<topic>``), each
  listed by its name while raised. ``/readyz`` answers 200 only while all conditions
  are true, no problem is raised and the process is not draining; ``start_draining()``
  on shutdown turns it false for good.

:class:`HealthServer` serves them with a small threaded ``http.server``: nothing
binds before ``start()``; ``port=0`` picks a free port, read back from ``.port``.
With several worker processes, give each its own port (base port + worker index).
``host`` is the address bound: ``127.0.0.1`` unless given; the pipeline passes
``metrics.host`` (default ``0.0.0.0``, see :class:`streamfer.pipeline.config.MetricsConfig`).
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from streamfer.errors import ConfigError, StreamferError
from streamfer.lifecycle import Lifecycle
from streamfer.pipeline.metrics import DEFAULT_PORT, Metrics

log = logging.getLogger(__name__)

DEFAULT_CONDITIONS: tuple[str, ...] = ("engines", "partitions")
Clock = Callable[[], int]  # nanoseconds, monotonic


class Heartbeat:
    """A component's proof of life; ``beat()`` is one clock read and one store."""

    __slots__ = ("_clock", "_last_ns", "_state", "max_age_s", "name")

    def __init__(self, state: HealthState, name: str, max_age_s: float, clock: Clock) -> None:
        self._state, self.name, self.max_age_s, self._clock = state, name, max_age_s, clock
        self._last_ns = clock()

    def beat(self) -> None:
        self._last_ns = self._clock()

    def age_s(self) -> float:
        return (self._clock() - self._last_ns) / 1e9

    def close(self) -> None:
        """The component stopped on purpose: stop watching it."""
        self._state.drop_heartbeat(self)


@dataclass(frozen=True)
class Check:
    ok: bool
    problems: tuple[str, ...]

    def to_json(self) -> bytes:
        body = {"status": "ok" if self.ok else "fail", "problems": list(self.problems)}
        return (json.dumps(body) + "\n").encode()


class HealthState:
    """Heartbeats and readiness conditions of one process (thread-safe)."""

    def __init__(
        self, conditions: Iterable[str] = DEFAULT_CONDITIONS, *, clock: Clock = time.monotonic_ns
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._heartbeats: dict[str, Heartbeat] = {}
        self._conditions: dict[str, bool | Callable[[], bool]] = dict.fromkeys(conditions, False)
        self._problems: set[str] = set()
        self._draining = False

    def heartbeat(self, name: str, max_age_s: float = 30.0) -> Heartbeat:
        """Register (or replace) the heartbeat ``name``; it counts as fresh from now."""
        if not max_age_s > 0:
            raise ConfigError(
                f"health | heartbeat {name!r} max_age_s={max_age_s!r}. Note: expected > 0"
            )
        hb = Heartbeat(self, name, max_age_s, self._clock)
        with self._lock:
            self._heartbeats[name] = hb
        return hb

    def drop_heartbeat(self, hb: Heartbeat) -> None:
        with self._lock:
            if self._heartbeats.get(hb.name) is hb:
                del self._heartbeats[hb.name]

    def set_ready(self, condition: str, ready: bool = True) -> None:
        """Set one readiness condition; a new name becomes one more condition."""
        with self._lock:
            self._conditions[condition] = ready

    def watch(self, condition: str, check: Callable[[], bool]) -> None:
        """Read ``condition`` from ``check()`` at every readiness check (keep it cheap)."""
        with self._lock:
            self._conditions[condition] = check

    def set_problem(self, name: str, present: bool = True) -> None:
        """Raise (or clear) the problem ``name``: not ready while raised, and ``/readyz``
        lists the name itself (it says what is wrong, not what is not ready)."""
        with self._lock:
            if present:
                self._problems.add(name)
            else:
                self._problems.discard(name)

    def start_draining(self) -> None:
        """Shutdown began: not ready from now on, whatever the conditions say."""
        with self._lock:
            self._draining = True

    def liveness(self) -> Check:
        with self._lock:
            beats = list(self._heartbeats.values())
        stale = tuple(
            f"heartbeat {hb.name!r} is {age:.1f} s old (limit {hb.max_age_s:g} s)"
            for hb in beats
            if (age := hb.age_s()) > hb.max_age_s
        )
        return Check(not stale, stale)

    def readiness(self) -> Check:
        with self._lock:
            conditions, draining = list(self._conditions.items()), self._draining
            raised = sorted(self._problems)
        problems = [
            f"{name} not ready"
            for name, state in conditions
            if not (state() if callable(state) else state)
        ]
        problems += raised
        if draining:
            problems.append("draining")
        return Check(not problems, tuple(problems))

    def is_ready(self) -> bool:
        return self.readiness().ok


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow scraper never holds the process open
    metrics: Metrics
    state: HealthState


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10.0  # seconds a silent client may hold a handler thread

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _respond(self, head: bool) -> None:
        code, body, content_type, extra = self._route(self.path.split("?", 1)[0])
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self, path: str) -> tuple[int, bytes, str, dict[str, str]]:
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            body = encoder(self.server.metrics.registry)
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                return 200, gzip.compress(body, 1), content_type, {"Content-Encoding": "gzip"}
            return 200, body, content_type, {}
        if path in ("/healthz", "/readyz"):
            state = self.server.state
            check = state.liveness() if path == "/healthz" else state.readiness()
            return (200 if check.ok else 503), check.to_json(), "application/json", {}
        return 404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain", {}

    def log_message(self, format: str, *args: object) -> None:
        log.debug("health | %s " + format, self.address_string(), *args)


class HealthServer(Lifecycle, start="start", stop="close"):
    """HTTP server for ``/metrics``, ``/healthz`` and ``/readyz``; a context manager.

    ``streamfer_ready`` in ``metrics`` follows ``state`` from construction on.
    """

    def __init__(
        self,
        metrics: Metrics,
        state: HealthState,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"health | port {port!r} out of range. Note: expected 0..65535")
        self.metrics, self.state, self.host = metrics, state, host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        metrics.set_ready_source(state.is_ready)

    @property
    def port(self) -> int:
        """The bound port (the free one picked for ``port=0``); only after ``start()``."""
        if self._server is None:
            raise StreamferError("health | server not started. Note: call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            server = _Server((self.host, self._requested_port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"health | cannot listen on {self.host}:{self._requested_port} ({exc.strerror}). "
                "Note: give each worker process its own port, or 0 for a free one"
            ) from exc
        server.metrics, server.state = self.metrics, self.state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2},
            name=f"health-http:{self.port}", daemon=True,
        )  # fmt: skip
        self._thread.start()
        log.info("health | serving /metrics /healthz /readyz on %s", self.url)

    def close(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        self._server = self._thread = None
