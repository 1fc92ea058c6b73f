"""State restore: how long a partition's state takes to come back, and what the store costs.

One changelog partition is filled with ``keys`` card states (as the fraud
featurizer's codec writes them, a few recent timestamps each, one entry per
card), then restored three ways into a fresh local store:

* ``changelog``: no local store (a crash, or a new machine): the whole
  changelog is read and written into the store;
* ``local+changelog``: a checkpoint from a clean close, with a tenth of the
  keys updated by another worker since (read from the checkpoint on);
* ``local``: a checkpoint that is current: nothing is read.

Also measured, without Kafka: the local stores the choice was made between
(LMDB, and RocksDB through rocksdict when it is installed), reading and
writing the keys of 512-record batches, microseconds per key.
"""

from __future__ import annotations

import random
import resource
import shutil
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamfer.bench.kafka_io import topic_set
from streamfer.bench.machine import probe_machine
from streamfer.bench.report import Report, Table
from streamfer.models.features import CARD_CODEC, _CardState
from streamfer.streams.client import ProducerOptions, ReaderOptions
from streamfer.streams.factory import client_factory
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.sink import KafkaSink
from streamfer.streams.state import Checkpoint, LocalStore
from streamfer.streams.state.changelog import changelog_config
from streamfer.streams.state.entry import pack_entry
from streamfer.streams.state.restore import Restored, restore

Say = Callable[[str], None]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _entry(i: int, offset: int) -> tuple[bytes, bytes]:
    ts = 1_767_225_600_000 + i
    state = _CardState(ts, 40.0 + i % 90, -70.0, 3.2, 7, array("q", [ts - 60_000, ts]))
    return f"card-{i:09d}".encode(), pack_entry(offset, ts, CARD_CODEC.encode(state))


def _fill(bootstrap: str, topic: str, keys: range, first_offset: int, say: Say) -> None:
    failed: list[object] = []

    def on_delivery(error: object | None, _message: object) -> None:
        if error is not None:
            failed.append(error)

    options = ProducerOptions(linger_ms=20, compression="lz4")
    with KafkaSink(KafkaSettings(bootstrap, client_id="bench-state"), options) as sink:
        chunk = 50_000
        for start in range(keys.start, keys.stop, chunk):
            stop = min(start + chunk, keys.stop)
            pairs = [_entry(i, first_offset + i) for i in range(start, stop)]
            sink.send_many(topic, [v for _, v in pairs], [k for k, _ in pairs], on_delivery,
                           partition=0)  # fmt: skip
        sink.flush(300)
    if failed:
        raise RuntimeError(f"{topic} | {len(failed)} changelog entries not written: {failed[0]}")
    say(f"{len(keys):,} entries in {topic}[0]")


def _timed_restore(bootstrap: str, topic: str, store: LocalStore, committed: int
                   ) -> tuple[Restored, float]:  # fmt: skip
    reader = client_factory().reader(KafkaSettings(bootstrap, client_id="bench-state"),
                                     ReaderOptions())  # fmt: skip
    try:
        cpu0 = _cpu_s()
        done = restore(store, reader, (topic, 0), committed, timeout_s=120)
        return done, _cpu_s() - cpu0
    finally:
        reader.close()


def run_restore(bootstrap: str, keys: int, command: str, say: Say) -> Report:
    machine = probe_machine()
    rows: list[tuple[str, ...]] = []
    raw: dict[str, Any] = {"keys": keys}
    work = Path(tempfile.mkdtemp(prefix="streamfer-bench-state-"))
    try:
        with topic_set(bootstrap) as topics:
            topic = f"bench-state-{random.randrange(1 << 30):08x}"
            from streamfer.streams.admin import create_topics

            create_topics(bootstrap, {topic: 1}, config=changelog_config(3600))
            topics.track(topic)
            _fill(bootstrap, topic, range(keys), 0, say)
            committed = keys + keys // 10
            with LocalStore(work / "p0") as store:
                done, cpu = _timed_restore(bootstrap, topic, store, committed)
                rows.append(_row(done, cpu))
                say(f"changelog: {done.keys:,} keys in {done.seconds:.1f} s")
                store.set_checkpoint(Checkpoint(keys, keys))  # as a clean close leaves it
            _fill(bootstrap, topic, range(keys // 10), keys, say)  # another worker went on
            with LocalStore(work / "p0") as store:
                done, cpu = _timed_restore(bootstrap, topic, store, committed)
                rows.append(_row(done, cpu))
                store.set_checkpoint(Checkpoint(committed, keys + keys // 10))
            with LocalStore(work / "p0") as store:
                done, cpu = _timed_restore(bootstrap, topic, store, committed)
                rows.append(_row(done, cpu))
            # allocated blocks: the data file is sparse up to the map size
            raw["disk_bytes"] = sum(f.stat().st_blocks * 512 for f in (work / "p0").iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(
        f"State restore of one partition, {keys:,} cards (confluent-kafka reader, LMDB store)",
        ("from", "keys", "changelog records read", "seconds", "records read/s", "CPU s"),
        tuple(rows),
    )
    stores = _store_table(min(keys, 200_000), say)
    return Report(
        "State restore",
        command,
        machine,
        [table, stores],
        notes=[
            f"store on disk after the restore: {raw['disk_bytes'] / 2**20:,.0f} MiB "
            f"({raw['disk_bytes'] / keys:,.0f} bytes a card, LMDB pages included)",
            "the reader reads with read_committed up to the high watermark as of the start",
        ],
        raw={**raw, "rows": rows},
    )


def _row(done: Restored, cpu_s: float) -> tuple[str, ...]:
    rate = f"{done.read / done.seconds:,.0f}" if done.read and done.seconds > 0 else "—"
    return (done.source, f"{done.keys:,}", f"{done.read:,}", f"{done.seconds:.2f}", rate,
            f"{cpu_s:.2f}")  # fmt: skip


def _store_table(n: int, say: Say) -> Table:
    """Per key: read and write the keys of 512-record batches (about 400 distinct)."""
    rng = random.Random(1)
    keys = [f"card-{i:09d}".encode() for i in range(n)]
    value = _entry(0, 0)[1]
    batches = [rng.sample(keys, 400) for _ in range(200)]
    rows = []
    work = Path(tempfile.mkdtemp(prefix="streamfer-bench-stores-"))
    try:
        with LocalStore(work / "lmdb") as store:
            store.write([(k, value) for k in keys])
            rows.append(("LMDB (lmdb)", *_per_key(batches, store.get_many,
                         lambda ks: store.write([(k, value) for k in ks]))))  # fmt: skip
        try:
            import rocksdict
        except ImportError:
            say("rocksdict not installed: RocksDB left out of the store comparison")
        else:
            opts = rocksdict.Options(raw_mode=True)
            opts.create_if_missing(True)
            db = rocksdict.Rdict(str(work / "rocks"), opts)
            write_opts = rocksdict.WriteOptions()
            write_opts.disable_wal = True  # type: ignore[method-assign,assignment]
            db.set_write_options(write_opts)  # no WAL: as durable as LMDB without sync

            def put(ks: list[bytes]) -> None:
                batch = rocksdict.WriteBatch(raw_mode=True)
                for k in ks:
                    batch.put(k, value)
                db.write(batch)

            put(keys)
            rows.append(("RocksDB (rocksdict)", *_per_key(batches, lambda ks: db.get(ks), put)))
            db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Table(
        f"Local store per key, batches of 400 keys out of {n:,} (CPU µs, one thread)",
        ("store", "read", "write"),
        tuple(rows),
    )


def _per_key(batches: list[list[bytes]], get: Callable[[Any], Any],
             put: Callable[[Any], None]) -> tuple[str, str]:  # fmt: skip
    n = sum(len(b) for b in batches)
    cpu0 = time.process_time()
    for b in batches:
        get(b)
    read = time.process_time() - cpu0
    cpu0 = time.process_time()
    for b in batches:
        put(b)
    write = time.process_time() - cpu0
    return f"{read / n * 1e6:.2f}", f"{write / n * 1e6:.2f}"
