"""Which streamfer files and which cross-package calls one record's route runs through.

Runs one real pipeline in this process for the transaction stream of a shipped config
(``deploy/configs/fraud.yaml`` as shipped; fresh random topics and group on the broker at
``$STREAMFER_BOOTSTRAP``), with a profile hook on every thread (``sys.setprofile`` and
``threading.setprofile``, installed before the pipeline starts its threads). Once the stream is
in steady state it records, for every function call that lands in a streamfer source file:

(a) the set of streamfer files whose functions run while records flow, and
(b) the distinct call edges caller -> callee whose packages differ among
    ``streamfer.pipeline`` / ``streamfer.streams`` / ``streamfer.engines`` / ``streamfer.models``,
    with how often each ran.

What is left out, and how it is told apart:

- one-off startup: recording starts only once ``--warmup`` records are resolved (decided,
  dropped or dead-lettered: the pipeline's own ``stats()``), so engine loading, topic checks,
  the group join and the state restore are over, and stops at ``--records - --tail``, before
  the input runs dry and the drain begins;
- idle polling: the input is produced in full before the pipeline starts (``--rate 0``, the
  default), so every poll in the window has records waiting; ``--rate N`` paces the input at N
  records a second instead, and then records only while the stream has records in flight
  (``stats().in_flight``, sampled every millisecond), which drops most idle polls, not all;
- the metrics HTTP server and its scrape threads: threads whose target function lives in
  ``socketserver`` or ``http.server`` are not recorded (``--scrape-every-s`` reads ``/metrics``
  meanwhile, to see that what a scrape runs stays out);
- this script's own thread (which starts the pipeline and reads its stats) is not recorded.

A caller is the nearest streamfer frame below the callee: a callback that a library (the
Kafka client, a thread pool) runs on streamfer's behalf counts as called by the streamfer
function that entered the library (marked ``via library``); one that C code runs (librdkafka's
delivery reports, inside the producer's ``poll``) has no frame between and reads as a direct
call. Generator resumptions count as calls. Modules are found by package (the file's path
under the ``streamfer`` package), so renames need no change here; the only project names used
are in ``ENTRY`` below.

    STREAMFER_BOOTSTRAP=127.0.0.1:9092 .venv/bin/python scripts/route_trace.py
    .venv/bin/python scripts/route_trace.py --state off --records 5000 --json /tmp/off.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import threading
import time
import types
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "deploy" / "configs" / "fraud.yaml"
# The one place this script names project modules: how a config file runs in-process, and the
# project's own transaction feed.
ENTRY = {
    "pipeline": "streamfer.pipeline.app:Pipeline",
    "load_config": "streamfer.pipeline.config:load_config",
    "feed": "streamfer.streams.local.feeds:transaction_feed",
}
PACKAGES = ("pipeline", "streams", "engines", "models")
EXCLUDED_THREAD_MODULES = ("socketserver", "http.server")
Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def entry(name: str) -> Any:
    module, _, attr = ENTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Place:
    """Where a function lives: its file under the streamfer package, its package, its name."""

    file: str  # e.g. streamfer/pipeline/consumer.py
    package: str  # pipeline, streams, engines, models, or "" for streamfer's own modules
    function: str  # module.qualname


@dataclass
class Route:
    """What ran while records flowed: calls per file and per cross-package edge."""

    files: Counter[str] = field(default_factory=Counter)
    edges: Counter[tuple[str, str, bool]] = field(default_factory=Counter)  # caller, callee, lib
    threads: dict[str, set[str]] = field(default_factory=dict)  # file -> thread names


class RouteRecorder:
    """A profile hook that counts calls into streamfer files while ``recording`` is set."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.recording = threading.Event()
        self.route = Route()
        self._places: dict[types.CodeType, Place | None] = {}
        self._lock = threading.Lock()
        self._driver = threading.current_thread()  # starts the pipeline, reads its stats
        self._thread = threading.local()  # .excluded, judged on the thread's first call

    def place(self, code: types.CodeType) -> Place | None:
        try:
            return self._places[code]
        except KeyError:
            pass
        found: Place | None = None
        path = Path(code.co_filename)
        if path.is_absolute() and path.suffix == ".py":
            try:
                rel = path.resolve().relative_to(self.root.parent)
            except ValueError:
                rel = None
            if rel is not None and rel.parts[0] == self.root.name:
                module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
                package = rel.parts[1] if len(rel.parts) > 2 else ""
                found = Place(rel.as_posix(), package, f"{module}.{code.co_qualname}")
        self._places[code] = found
        return found

    def _thread_excluded(self) -> bool:
        excluded: bool | None = getattr(self._thread, "excluded", None)
        if excluded is None:
            thread = threading.current_thread()
            target = getattr(thread, "_target", None)  # the function the thread was started on
            module = getattr(target, "__module__", "") or ""
            excluded = thread is self._driver or module in EXCLUDED_THREAD_MODULES
            self._thread.excluded = excluded
        return excluded

    def __call__(self, frame: types.FrameType, event: str, arg: object) -> None:
        if event != "call" or not self.recording.is_set():
            return
        callee = self.place(frame.f_code)
        if callee is None:
            return
        if self._thread_excluded():
            return
        caller, via_library = None, False
        back = frame.f_back
        while back is not None:
            caller = self.place(back.f_code)
            if caller is not None:
                break
            via_library = True
            back = back.f_back
        with self._lock:
            self.route.files[callee.file] += 1
            self.route.threads.setdefault(callee.file, set()).add(threading.current_thread().name)
            if (
                caller is not None
                and caller.package != callee.package
                and caller.package in PACKAGES
                and callee.package in PACKAGES
            ):
                self.route.edges[(caller.function, callee.function, via_library)] += 1


@contextmanager
def profiling(recorder: RouteRecorder) -> Iterator[None]:
    sys.setprofile(recorder)
    threading.setprofile(recorder)
    try:
        yield
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        sys.setprofile(None)


@dataclass(frozen=True)
class Run:
    """One traced run's settings."""

    bootstrap: str
    config: Path
    state: bool
    records: int
    warmup: int
    tail: int
    partitions: int
    rate: float
    timeout_s: float
    scrape_every_s: float


def config_for(run: Run, run_id: str, state_dir: Path, out: Path) -> tuple[Path, str, str]:
    """The shipped config with this run's broker, topics, group and state switch, written to
    ``out``; returns it, the stream's name and its input topic."""
    doc = yaml.safe_load(run.config.read_text(encoding="utf-8"))
    base = run.config.resolve().parent
    doc.setdefault("kafka", {})["bootstrap_servers"] = run.bootstrap
    doc.setdefault("consumer", {})["group_id"] = run_id
    doc.setdefault("metrics", {})["port"] = 0  # shared machine: any free port
    for model in doc.get("models", {}).values():
        if "path" in model:
            model["path"] = str((base / model["path"]).resolve())
    streams = [s for s in doc["streams"] if s.get("kind") == "transaction"]
    if not streams:
        raise SystemExit(f"{run.config} | no transaction stream. Note: expected one")
    stream = streams[0]
    doc["streams"] = [stream]
    stream["input_topic"] = f"{run_id}.tx"
    stream["output_topic"] = f"{run_id}.decisions"
    stream.pop("dlq_topic", None)
    state = stream.setdefault("state", {})
    state["enabled"] = run.state
    if run.state:
        state["dir"] = str(state_dir)
    out.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return out, stream["name"], stream["input_topic"]


def produce(bootstrap: str, topic: str, messages: list[Message], rate: float) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    chunk = 20
    for i in range(0, len(messages), chunk):
        for key, value, headers in messages[i : i + chunk]:
            producer.send(topic, key=key, value=value, headers=headers)
        if rate > 0:
            producer.flush()
            time.sleep(chunk / rate)  # pacing the input, not waiting for a condition
    producer.flush(60)
    producer.close()


def wait_for(what: str, done: Callable[[], bool], timeout_s: float, every_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"route trace | {what} not reached in {timeout_s:.0f} s")
        time.sleep(every_s)


def trace(run: Run) -> tuple[Route, dict[str, float]]:
    run_id = f"route-trace-{uuid.uuid4().hex[:8]}"
    feed = entry("feed")
    messages: list[Message] = list(islice(feed(seed=0), run.records))
    admin = KafkaAdminClient(bootstrap_servers=run.bootstrap)
    recorder = RouteRecorder(Path(importlib.import_module("streamfer").__file__ or "").parent)
    with tempfile.TemporaryDirectory() as tmp:
        path, name, topic = config_for(run, run_id, Path(tmp) / "state", Path(tmp) / "c.yaml")
        admin.create_topics([NewTopic(topic, run.partitions, 1)])
        producer: threading.Thread | None = None
        if run.rate <= 0:
            produce(run.bootstrap, topic, messages, 0)
        else:
            producer = threading.Thread(
                target=produce, args=(run.bootstrap, topic, messages, run.rate), daemon=True
            )
        try:
            with profiling(recorder):
                pipe = entry("pipeline")(entry("load_config")(path))
                with pipe:
                    if producer is not None:
                        producer.start()
                    scrape = scraper(pipe.http_url) if run.scrape_every_s > 0 else None
                    timing = record_window(run, recorder, lambda: pipe.stats()[name], scrape)
        finally:
            if producer is not None:
                producer.join(60)
            delete_run_topics(admin, run_id)
            admin.close()
    return recorder.route, timing


def scraper(url: str | None) -> Callable[[], None]:
    """Reads ``/metrics`` once a call, as Prometheus would (to see its threads left out)."""
    if url is None:
        raise SystemExit("route trace | --scrape-every-s needs metrics served. Note: the "
                         "config's metrics.enabled is false")  # fmt: skip

    def scrape() -> None:
        with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=10) as response:
            response.read()

    return scrape


def record_window(
    run: Run, recorder: RouteRecorder, snap: Callable[[], Any], scrape: Callable[[], None] | None
) -> dict[str, float]:
    """Turn recording on between ``warmup`` and ``records - tail`` resolved records; ``scrape``
    (if any) runs every ``run.scrape_every_s`` meanwhile."""
    t0 = time.monotonic()
    wait_for(f"{run.warmup} records resolved", lambda: snap().resolved >= run.warmup,
             run.timeout_s, 0.001)  # fmt: skip
    start = time.monotonic()
    first = snap().resolved
    stop_at = run.records - run.tail
    gated = run.rate > 0
    recorder.recording.set()
    deadline = start + run.timeout_s
    next_scrape = start
    scrapes = 0
    while (current := snap()).resolved < stop_at:
        if scrape is not None and time.monotonic() >= next_scrape:
            scrape()
            scrapes += 1
            next_scrape += run.scrape_every_s
        if time.monotonic() > deadline:
            raise SystemExit(f"route trace | {stop_at} records not resolved in {run.timeout_s} s")
        if gated:
            if current.in_flight > 0:
                recorder.recording.set()
            else:
                recorder.recording.clear()
        time.sleep(0.001)
    recorder.recording.clear()
    end = time.monotonic()
    return {
        "startup_s": start - t0,
        "window_s": end - start,
        "window_records": float(snap().resolved - first),
        "scrapes": float(scrapes),
    }


def delete_run_topics(admin: KafkaAdminClient, run_id: str) -> None:
    mine = [t for t in admin.list_topics() if t.startswith(run_id)]
    if mine:
        admin.delete_topics(mine)


def report(run: Run, route: Route, timing: dict[str, float]) -> str:
    mode = "on" if run.state else "off"
    runtime_files = [
        f for f in route.files if f.split("/")[1] in ("pipeline", "streams", "engines")
    ]
    per_k = 1000 / max(timing["window_records"], 1)
    lines = [
        f"route trace: {run.config.name}, state store {mode}, {run.records} records "
        f"(warm-up {run.warmup}, tail {run.tail}), "
        f"{'backlog' if run.rate <= 0 else f'{run.rate:.0f}/s'} input, "
        f"{run.partitions} partition(s)",
        f"startup {timing['startup_s']:.1f} s; recorded window {timing['window_s']:.2f} s, "
        f"{timing['window_records']:.0f} records resolved in it, {timing['scrapes']:.0f} scrapes; "
        f"threads recorded: {', '.join(sorted(set().union(*route.threads.values())))}",
        "",
        f"files ({len(route.files)}; {len(runtime_files)} in pipeline/streams/engines), "
        f"calls, calls per 1,000 records, threads (all: {sum(route.files.values())}, "
        f"{sum(route.files.values()) * per_k / 1000:.1f} a record):",
    ]
    lines += [
        f"  {calls:>9} {calls * per_k:>9.1f}  {f}  [{', '.join(sorted(route.threads[f]))}]"
        for f, calls in sorted(route.files.items())
    ]
    pairs = Counter[str]()
    modules: set[tuple[str, str]] = set()
    for caller, callee, _ in route.edges:
        pairs[f"{caller.split('.')[1]} -> {callee.split('.')[1]}"] += 1
        modules.add((module_of(caller), module_of(callee)))
    lines += [
        "",
        f"cross-package call edges ({len(route.edges)} distinct; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(pairs.items()))
        + "), calls, calls per 1,000 records:",
    ]
    for (caller, callee, lib), calls in sorted(route.edges.items()):
        mark = "  (via library)" if lib else ""
        lines.append(f"  {calls:>9} {calls * per_k:>9.1f}  {caller} -> {callee}{mark}")
    lines += ["", f"the same as module pairs ({len(modules)} distinct):"]
    lines += [f"  {a} -> {b}" for a, b in sorted(modules)]
    return "\n".join(lines)


def module_of(function: str) -> str:
    """``streamfer.pkg.mod.Class.method`` -> ``streamfer.pkg.mod``: the longest prefix that
    is an imported module."""
    parts = function.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in sys.modules:
            return ".".join(parts[:end])
    return function


def as_json(run: Run, route: Route, timing: dict[str, float]) -> dict[str, Any]:
    return {
        "state": run.state,
        "records": run.records,
        "timing": timing,
        "files": dict(sorted(route.files.items())),
        "threads": {f: sorted(names) for f, names in sorted(route.threads.items())},
        "edges": [
            {"caller": a, "callee": b, "via_library": lib, "calls": n}
            for (a, b, lib), n in sorted(route.edges.items())
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("STREAMFER_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument(
        "--state",
        choices=("on", "off"),
        default="on",
        help="the stream's state store (the config's state section) on or off",
    )
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=None, help="default: a fifth of --records")
    ap.add_argument("--tail", type=int, default=None, help="default: a tenth of --records")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="records a second; 0 (default): all produced before the start",
    )
    ap.add_argument("--timeout-s", type=float, default=120.0)
    ap.add_argument("--scrape-every-s", type=float, default=0.0,
                    help="also read /metrics this often while recording (0: never)")  # fmt: skip
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()  # fmt: skip
    run = Run(
        bootstrap=args.bootstrap,
        config=args.config,
        state=args.state == "on",
        records=args.records,
        warmup=args.records // 5 if args.warmup is None else args.warmup,
        tail=args.records // 10 if args.tail is None else args.tail,
        partitions=args.partitions,
        rate=args.rate,
        timeout_s=args.timeout_s,
        scrape_every_s=args.scrape_every_s,
    )
    route, timing = trace(run)
    print(report(run, route, timing))
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(run, route, timing), indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
