"""The state store's cost on the fraud stream, without the rest of the pipeline.

Each poll of 1,000 transactions (``transaction_pool(seed=0)``) goes through the
fraud processor twice in one process, alternately, so both see the same load:
``prepare`` with the in-memory featurizer (state off) and ``prepare_with_state``
through a real :class:`~streamfer.streams.state.StateManager` whose changelog
goes through a real :class:`~streamfer.streams.sink.KafkaSink` to the broker
(state on), with a flush every ``--polls-per-flush`` polls (10: about a 200 ms
commit interval at 50,000 records/s). Prints the consumer thread's CPU µs per
record for each path (``time.thread_time``) and the whole process's CPU over
both (librdkafka's threads included)::

    python -m streamfer.bench.state_cost --label after
    # a checkout from before coalescing: run from its root, with its code first on the path
    PYTHONPATH=/tmp/before python -m streamfer.bench.state_cost --label before

Checkouts without ``StateManager.flush`` wrote per poll; the script then does too.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

BOOT_DEFAULT = os.environ.get("STREAMFER_BOOTSTRAP", "127.0.0.1:9092")


class _EmptyChangelog:
    def offsets(self, tp: tuple[str, int], timeout_s: float) -> tuple[int, int]:
        return 0, 0

    def close(self) -> None:
        pass


class _Quiet:
    def state_restored(self, partition: int, seconds: float, keys: int, source: str) -> None:
        pass

    def state_expired(self, n: int) -> None:
        pass


def measure(bootstrap: str, records: int, poll: int, polls_per_flush: int) -> dict[str, float]:
    from streamfer.bench.records import transaction_pool
    from streamfer.pipeline.config import parse_config
    from streamfer.pipeline.processors.transaction import TransactionProcessor
    from streamfer.streams.admin import create_topics
    from streamfer.streams.records import RecordBatch
    from streamfer.streams.settings import KafkaSettings
    from streamfer.streams.sink import KafkaSink
    from streamfer.streams.state import ChangelogWriter, StateManager, StateOptions
    from streamfer.streams.tracker import OffsetTracker

    raw = yaml.safe_load(Path("deploy/configs/fraud.yaml").read_text())
    raw["kafka"] = {"bootstrap_servers": bootstrap}
    raw["models"]["fraud"]["path"] = str(Path("streamfer/models/fraud.onnx").resolve())
    stream = parse_config(raw).streams[0]
    off, on = TransactionProcessor(stream), TransactionProcessor(stream)
    pool = transaction_pool(records, seed=0)
    topic = f"bench-state-cost-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {topic: 1})
    tracker = OffsetTracker()
    sink = KafkaSink(KafkaSettings(bootstrap_servers=bootstrap)).start()

    def batch(i: int) -> Any:
        chunk = pool[i : i + poll]
        n = len(chunk)
        return RecordBatch("in", 0, list(range(i, i + n)), [k for k, _, _ in chunk],
                           [v for _, v, _ in chunk], [None] * n, [0] * n, 0)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        mgr: Any = StateManager(
            stream="s", input_topic="in", codec=on.state_codec(),
            options=StateOptions(dir=Path(tmp), ttl_s=2_592_000, cache_keys=100_000,
                                 restore_timeout_s=5),
            writer=ChangelogWriter(sink, topic, tracker, print), reader=_EmptyChangelog,  # type: ignore[arg-type]
            committed=lambda tp: None, listener=_Quiet(), topic_exists=lambda topic: True,
        )  # fmt: skip
        mgr.assigned([("in", 0)])
        view = mgr.view(0)
        flush = getattr(mgr, "flush", None)
        t_off = t_on = 0.0
        cpu0 = time.process_time()
        for j, i in enumerate(range(0, records, poll)):
            b = batch(i)
            t = time.thread_time()
            off.prepare(b)
            t_off += time.thread_time() - t
            b = batch(i)
            t = time.thread_time()
            b.span = tracker.add(("in", 0), b.offsets)
            on.prepare_with_state(b, view)
            mgr.write(b, view)
            if flush is not None and (j + 1) % polls_per_flush == 0:
                flush()
            tracker.resolve_all(b.span)
            t_on += time.thread_time() - t
        if flush is not None:
            flush()
        sink.flush(60)
        if not tracker.wait_idle(None, 60):
            raise RuntimeError("state cost | changelog entries unacknowledged after 60 s")
        cpu = time.process_time() - cpu0
        mgr.close()
    sink.close()
    us = 1e6 / records
    return {"off_us": t_off * us, "on_us": t_on * us, "store_us": (t_on - t_off) * us,
            "process_us": cpu * us}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", default=BOOT_DEFAULT)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--poll", type=int, default=1_000)
    ap.add_argument("--polls-per-flush", type=int, default=10)
    ap.add_argument("--label", default="this checkout")
    args = ap.parse_args()
    got = measure(args.bootstrap, args.records, args.poll, args.polls_per_flush)
    print(f"{args.label}: consumer thread CPU µs/record: off {got['off_us']:.2f}, "
          f"on {got['on_us']:.2f}, store {got['store_us']:.2f}; process CPU over both "
          f"passes {got['process_us']:.2f}; load {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
