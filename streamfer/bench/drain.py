"""Drain a preloaded backlog of one kind through the pipeline of a given checkout.

For "no slower than before" comparisons of a stream kind across commits, side
by side on one machine (from this checkout's root)::

    git worktree add /tmp/before <commit>     # and its venv: bash scripts/setup.sh dev there
    python -m streamfer.bench.drain load sensor 30000   # prints the topic
    /tmp/before/.venv/bin/python -m streamfer.bench.drain run --repo /tmp/before --kind sensor \
        --topic T --records 30000
    python -m streamfer.bench.drain run --repo . --kind sensor --topic T --records 30000

``run`` imports the pipeline of ``--repo`` (run it with that checkout's
Python), rewrites its shipped config (``deploy/configs/fraud.yaml``,
``sensor.yaml`` or ``camera.yaml``; the state store off unless ``--state``)
to replay mode on ``--topic`` with a fresh group, and prints records/s and
CPU µs per record of the process from its first consumed record to the last
resolved one, and the full (generation 2) garbage collections in that span. As
``streamfer run`` does, it freezes the start-up heap once the pipeline is ready
(where the checkout has ``freeze_start_up_heap``; ``--no-freeze``: not). It is not
recorded anywhere: copy the lines into ``bench/RESULTS.md`` with the machine and
the commits.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

CONFIGS = {"transaction": "fraud.yaml", "sensor": "sensor.yaml", "camera": "camera.yaml"}
REALTIME_ONLY = ("drop_stale", "deadline_ms", "latest_per_key")  # replay drops nothing


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _FullCollections:
    """The generation-2 collections' pauses (ms) while counting; every thread waits them out."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.counting = False
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2 or not self.counting:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._began) * 1e3)

    def summary(self) -> str:
        if not self.pauses:
            return "no full collection"
        return f"{len(self.pauses)} full collection(s), longest {max(self.pauses):.1f} ms"


def load(kind: str, n: int, bootstrap: str) -> str:
    from streamfer.bench.kafka_io import produce_all
    from streamfer.streams.admin import create_topics
    from streamfer.streams.local.feeds import camera_feed, sensor_feed, transaction_feed

    topic = f"drain-{kind}-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {topic: 1})
    feeds = {"transaction": lambda: transaction_feed(seed=1), "sensor": lambda: sensor_feed(seed=1),
             "camera": lambda: camera_feed(cameras=4)}  # fmt: skip
    feed = feeds[kind]()
    produce_all(bootstrap, topic, itertools.islice(feed, n))
    return topic


def run(repo: Path, kind: str, topic: str, n: int, bootstrap: str, state: bool,
        freeze: bool = True) -> str:  # fmt: skip
    sys.path.insert(0, str(repo))
    import yaml

    from streamfer.pipeline.app import Pipeline
    from streamfer.pipeline.config import parse_config

    configs = repo / "deploy" / "configs"
    raw: dict[str, Any] = yaml.safe_load((configs / CONFIGS[kind]).read_text())
    for model in raw["models"].values():
        model["path"] = str(configs / model["path"])
    stream = raw["streams"][0]
    stream.update(input_topic=topic, output_topic=f"{topic}-out-{uuid.uuid4().hex[:4]}")
    stream["mode"] = "replay"
    for key in REALTIME_ONLY:
        stream.pop(key, None)
    if not state:  # the same work in every checkout, with or without a state store
        stream.pop("state", None)
    raw.setdefault("kafka", {})["bootstrap_servers"] = bootstrap
    raw["consumer"]["group_id"] = f"drain-{uuid.uuid4().hex[:8]}"
    raw["metrics"] = {"enabled": True, "port": 0}
    cfg = parse_config(raw, "drain", configs)
    name = cfg.streams[0].name
    collections = _FullCollections()
    gc.callbacks.append(collections)
    with Pipeline(cfg) as pipe:
        pipe.wait_ready(60)
        try:
            from streamfer.pipeline.run_cli import freeze_start_up_heap  # as streamfer run
        except ImportError:  # a checkout from before it
            freeze = False
        if freeze:
            freeze_start_up_heap()
        start: tuple[float, float, int] | None = None
        while True:
            snap = pipe.stats()[name]
            if start is None and snap.consumed > 0:
                start = (time.perf_counter(), _cpu_s(), snap.resolved)
                collections.counting = True
            if snap.resolved >= n or pipe.failure is not None:
                break
            time.sleep(0.01)  # sampling the counters, not waiting for a condition
        if pipe.failure is not None or start is None:
            raise SystemExit(f"drain: the pipeline failed: {pipe.failure}")
        wall, cpu = time.perf_counter() - start[0], _cpu_s() - start[1]
        collections.counting = False
        done = snap.resolved - start[2]
    return (f"{kind} {repo}: {done / wall:,.0f} records/s, {cpu / done * 1e6:,.1f} µs CPU "
            f"per record ({done:,} records, decided {snap.decided:,}; "
            f"{collections.summary()})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    sub = parser.add_subparsers(dest="command", required=True)
    p_load = sub.add_parser("load", help="produce a backlog; prints its topic")
    p_load.add_argument("kind", choices=sorted(CONFIGS))
    p_load.add_argument("records", type=int)
    p_run = sub.add_parser("run", help="drain a backlog through --repo's pipeline")
    p_run.add_argument("--repo", type=Path, required=True)
    p_run.add_argument("--kind", choices=sorted(CONFIGS), required=True)
    p_run.add_argument("--topic", required=True)
    p_run.add_argument("--records", type=int, required=True)
    p_run.add_argument("--state", action="store_true",
                       help="keep the config's state store (default: off, as before it existed)")
    p_run.add_argument("--no-freeze", action="store_true",
                       help="leave the start-up heap to the collector (as before streamfer run "
                            "froze it)")
    args = parser.parse_args()
    if args.command == "load":
        print(load(args.kind, args.records, args.bootstrap))
    else:
        print(run(args.repo.resolve(), args.kind, args.topic, args.records, args.bootstrap,
                  args.state, not args.no_freeze))


if __name__ == "__main__":
    main()
