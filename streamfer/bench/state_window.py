"""What the state store's changelog window costs the fraud stream, by thread.

One backlog of transactions (``transaction_pool(seed=0)``) is drained by
``streamfer run`` with ``deploy/configs/fraud.yaml`` as shipped in three
variants, interleaved round by round so drift in the machine's load hits them
alike: the state store off; on with ``state.flush_interval_ms: 0`` (a flush
before every commit, so a window of the profile's commit interval: 50 ms for
``low``); and on with the default flush interval. For each drain it prints the
rate, the pipeline process's CPU µs a record and each thread's (by the OS
names the pipeline gives them), from the first decision to the last::

    python -m streamfer.bench.state_window --records 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field

from streamfer.bench.kafka_io import OffsetProbe, produce_all, run_id, topic_set
from streamfer.bench.pipeline_proc import (
    CONFIG_DIR,
    bench_config,
    load_raw,
    start_flowing,
    wait_decisions,
)
from streamfer.bench.records import transaction_pool

VARIANTS: dict[str, dict[str, object]] = {
    "state off": {"enabled": False},
    "state on, flush at every commit": {"enabled": True, "flush_interval_ms": 0},
    "state on, default flush interval": {"enabled": True},
}


@dataclass
class Drain:
    rate: float
    cpu_us: float
    threads_us: dict[str, float] = field(default_factory=dict)


def drain(bootstrap: str, topic: str, records: int, state: dict[str, object]) -> Drain:
    cfg = CONFIG_DIR / "fraud.yaml"
    rid = run_id()
    with topic_set(bootstrap) as topics, tempfile.TemporaryDirectory() as where:
        out = topics.output(f"bench-{rid}-window-out")
        group = f"bench-{rid}-window"
        raw, parsed = bench_config(
            load_raw(cfg), source=str(cfg), kind="transaction", bootstrap=bootstrap,
            input_topic=topic, output_topic=out, group=group,
            overrides={"state": {**state, "dir": where}},
        )  # fmt: skip
        topics.track(parsed.streams[0].state_topic(group))
        with OffsetProbe(bootstrap, out) as probe:
            proc, _ = start_flowing(raw, probe.count, lambda _: None)
            try:
                threads0, cpu0, got0 = proc.thread_cpu_seconds(), proc.cpu_seconds(), probe.count()
                t0 = time.monotonic()
                got = wait_decisions(proc, probe.count, records, 300)
                seconds = time.monotonic() - t0
                threads1, cpu1 = proc.thread_cpu_seconds(), proc.cpu_seconds()
            finally:
                proc.stop()
    n = max(got - got0, 1)
    per = {k: (v - threads0.get(k, 0.0)) * 1e6 / n for k, v in threads1.items()}
    return Drain(n / seconds, (cpu1 - cpu0) * 1e6 / n, {k: v for k, v in per.items() if v > 0.05})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("STREAMFER_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list[Drain]] = {name: [] for name in VARIANTS}
    with topic_set(args.bootstrap) as topics:
        topic = topics.input(f"bench-{run_id()}-window-tx")
        topics.track(f"{topic}.dlq")
        produce_all(args.bootstrap, topic, transaction_pool(args.records, seed=0))
        for r in range(args.rounds):
            for name, state in VARIANTS.items():
                d = drain(args.bootstrap, topic, args.records, state)
                runs[name].append(d)
                threads = ", ".join(f"{k} {v:.2f}" for k, v in sorted(d.threads_us.items()))
                print(f"round {r + 1} {name:>34}: {d.rate:9,.0f}/s, {d.cpu_us:5.1f} µs CPU a "
                      f"record; by thread: {threads}; load {os.getloadavg()[0]:.2f}")  # fmt: skip
    off = runs["state off"]
    for name, got in runs.items():
        names = sorted({k for d in got for k in d.threads_us})
        med = {k: statistics.median(d.threads_us.get(k, 0.0) for d in got) for k in names}
        extra = [d.cpu_us - o.cpu_us for d, o in zip(got, off, strict=True)]
        consumer = [_consumer(d) - _consumer(o) for d, o in zip(got, off, strict=True)]
        print(f"median {name:>34}: {statistics.median(d.rate for d in got):9,.0f}/s, "
              f"{statistics.median(d.cpu_us for d in got):5.1f} µs a record; over state off: "
              f"process {statistics.median(extra):+.2f} ({_rounds(extra)}), consumer thread "
              f"{statistics.median(consumer):+.2f} ({_rounds(consumer)}); by thread: "
              + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))  # fmt: skip


def _consumer(d: Drain) -> float:
    return sum(v for k, v in d.threads_us.items() if k.startswith("consume-"))


def _rounds(values: list[float]) -> str:
    return " / ".join(f"{x:+.2f}" for x in values)


if __name__ == "__main__":
    main()
