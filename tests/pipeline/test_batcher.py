"""The batcher: flush rules, drops, and that every row ends in one batch or one drop."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfer.pipeline.batcher import Batch, Batcher, Chunk, LatencyModel

MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class Drops:
    """The batcher's ``on_drop``: keeps (payload, row, reason) and refuses a row twice."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, int, str]] = []

    def __call__(self, chunk: Chunk[object], rows: np.ndarray, reason: str) -> None:
        assert rows.dtype.kind == "i" and len(rows)
        for r in rows.tolist():
            assert not chunk.waiting[r]  # taken off the queue before it is reported
            assert (chunk.payload, r) not in {(p, x) for p, x, _ in self.seen}
            self.seen.append((chunk.payload, r, reason))


def make(clock: FakeClock, drops: Drops | None = None, **kw: object) -> Batcher[object]:
    opts: dict = {"max_batch": 4, "max_wait_ns": 5 * MS, "clock": clock,
                  "on_drop": drops or Drops()}  # fmt: skip
    opts.update(kw)
    return Batcher(**opts)


def rows_of(batch: Batch[object]) -> list[tuple[object, int]]:
    return [(s.chunk.payload, r) for s in batch.segments for r in s.rows.tolist()]


def full_batch(*chunks: Chunk[object]) -> tuple[Batch[object], Batcher[object]]:
    """The batch a batcher of 4 forms at once from ``chunks``, and the batcher."""
    b = make(FakeClock())
    for chunk in chunks:
        b.put(chunk)
    batch = b.poll()
    assert batch is not None and batch.reason == "full"
    return batch, b


def test_flushes_when_full_without_splitting_a_chunk_that_fits_the_next_batch() -> None:
    batch, b = full_batch(Chunk("a", 3), Chunk("b", 2))
    assert rows_of(batch) == [("a", 0), ("a", 1), ("a", 2)]  # b would not fit whole
    assert batch.segments[0].whole
    assert len(b) == 2
    (rest,) = b.drain()
    assert rows_of(rest) == [("b", 0), ("b", 1)] and rest.segments[0].whole


def test_a_chunk_larger_than_a_batch_is_split_and_its_rest_leads_the_next() -> None:
    batch, b = full_batch(Chunk("a", 6), Chunk("b", 1))
    assert rows_of(batch) == [("a", 0), ("a", 1), ("a", 2), ("a", 3)]
    assert not batch.segments[0].whole
    (rest,) = b.drain()
    assert rows_of(rest) == [("a", 4), ("a", 5), ("b", 0)]  # the rest and b fit together


def test_flushes_after_max_wait_of_oldest() -> None:
    clock = FakeClock()
    b = make(clock)
    b.put(Chunk(1, 1))
    clock.now = 3 * MS
    b.put(Chunk(2, 1))
    assert b.poll() is None
    assert b.next_flush_ns() == 5 * MS
    clock.now = 5 * MS
    batch = b.poll()
    assert batch is not None and batch.reason == "wait" and rows_of(batch) == [(1, 0), (2, 0)]


def test_flushes_early_for_deadline_given_measured_latency() -> None:
    clock = FakeClock()
    b = make(clock, max_wait_ns=50 * MS)
    b.observe(2, 10 * MS)
    b.put(Chunk(1, 2, deadlines_ns=np.array([100 * MS, 30 * MS])))
    # two rows, a 2-batch takes 10 ms, the first deadline is 30 ms: flush by 20 ms
    assert b.next_flush_ns() == 20 * MS
    clock.now = 19 * MS
    assert b.poll() is None
    clock.now = 20 * MS
    batch = b.poll()
    assert batch is not None and batch.reason == "deadline" and len(batch) == 2


def test_stale_rows_are_dropped_with_reason() -> None:
    clock = FakeClock()
    drops = Drops()
    b = make(clock, drops, drop_stale=True)
    clock.now = 10 * MS
    b.put(Chunk("c", 3, deadlines_ns=np.array([5 * MS, 12 * MS, 100 * MS])))
    assert drops.seen == [("c", 0, "stale")]  # already past: dropped at once
    clock.now = 12 * MS
    assert b.poll() is None
    assert drops.seen[1:] == [("c", 1, "stale")]
    assert len(b) == 1
    (batch,) = b.drain()
    assert rows_of(batch) == [("c", 2)]


def test_without_drop_policy_late_rows_still_go_through() -> None:
    clock = FakeClock()
    drops = Drops()
    b = make(clock, drops, drop_stale=False)
    clock.now = 10 * MS
    b.put(Chunk(0, 1, deadlines_ns=np.array([5 * MS])))
    batch = b.poll()
    assert batch is not None and rows_of(batch) == [(0, 0)] and drops.seen == []


def test_latest_per_key_supersedes_older_rows_across_and_within_chunks() -> None:
    clock = FakeClock()
    drops = Drops()
    b = make(clock, drops, latest_per_key=True, max_batch=10)
    b.put(Chunk("a", 2, keys=["cam-1", "cam-2"]))
    b.put(Chunk("b", 3, keys=["cam-1", None, "cam-1"]))
    assert drops.seen == [("a", 0, "superseded"), ("b", 0, "superseded")]
    (batch,) = b.drain()
    assert rows_of(batch) == [("a", 1), ("b", 1), ("b", 2)]


def test_latency_model_estimates_unseen_sizes_conservatively() -> None:
    m = LatencyModel()
    assert m.estimate_ns(8) == 0
    m.observe(4, 4 * MS)
    m.observe(16, 10 * MS)
    assert m.estimate_ns(4) == 4 * MS
    assert m.estimate_ns(8) == 10 * MS  # bounded by the next larger size
    assert m.estimate_ns(32) == 20 * MS  # scaled from the largest known


# --- properties ---------------------------------------------------------------

put_op = st.tuples(
    st.integers(0, 8 * MS),  # time until this put
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 40 * MS)),  # deadline budget from now
            st.one_of(st.none(), st.integers(0, 3)),  # key
        ),
        min_size=1,
        max_size=5,
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(put_op, max_size=40),
    max_batch=st.integers(1, 8),
    max_wait_ms=st.integers(0, 10),
    latency_ms=st.integers(0, 5),
    drop_stale=st.booleans(),
    latest_per_key=st.booleans(),
)
def test_properties_hold_for_any_arrival_pattern(
    ops: list[tuple[int, list[tuple[int | None, int | None]]]],
    max_batch: int,
    max_wait_ms: int,
    latency_ms: int,
    drop_stale: bool,
    latest_per_key: bool,
) -> None:
    clock = FakeClock()
    latency = LatencyModel()
    for size in range(1, max_batch + 1):
        latency.observe(size, latency_ms * MS)
    drops = Drops()
    b: Batcher[object] = Batcher(
        max_batch,
        max_wait_ms * MS,
        on_drop=drops,
        drop_stale=drop_stale,
        latest_per_key=latest_per_key,
        clock=clock,
        latency=latency,
    )
    meta: dict[tuple[object, int], tuple[int, int | None]] = {}  # row -> (enqueued, deadline)
    batches: list[Batch[object]] = []

    def run_due() -> None:
        # the owner polls exactly when the batcher says a flush is due
        while (due := b.next_flush_ns()) is not None and due <= clock.now:
            batch = b.poll()
            if batch is None:
                break
            batches.append(batch)

    for n, (gap, rows) in enumerate(ops):
        target = clock.now + gap
        while (due := b.next_flush_ns()) is not None and due <= target:
            clock.now = max(clock.now, due)
            run_due()
        clock.now = target
        deadlines = [None if budget is None else clock.now + budget for budget, _ in rows]
        has_deadlines = any(d is not None for d in deadlines)
        for r, d in enumerate(deadlines):
            meta[(n, r)] = (clock.now, d)
        b.put(Chunk(n, len(rows), keys=[k for _, k in rows],
                    deadlines_ns=np.array([2**62 if d is None else d for d in deadlines],
                                          dtype=np.int64) if has_deadlines else None))  # fmt: skip
        run_due()
    while (due := b.next_flush_ns()) is not None:
        clock.now = max(clock.now, due)
        run_due()

    # every row ends in exactly one batch or one drop
    taken = [row for batch in batches for row in rows_of(batch)]
    dropped = [(p, r) for p, r, _ in drops.seen]
    outcomes = Counter(taken + dropped)
    assert set(outcomes) == set(meta) and set(outcomes.values()) <= {1}
    assert len(b) == 0
    # a chunk is split only where it leads a batch: one that joined a batch behind another
    # went whole, so it is in no later batch
    joined_behind: set[object] = set()
    for batch in batches:
        payloads = [s.chunk.payload for s in batch.segments]
        assert not joined_behind & set(payloads), "a chunk split behind another"
        joined_behind |= set(payloads[1:])
    for batch in batches:
        assert 1 <= len(batch) <= max_batch
        for row in rows_of(batch):
            enqueued, deadline = meta[row]
            # nobody waits past max_wait
            assert batch.formed_ns - enqueued <= max_wait_ms * MS
            if deadline is not None and drop_stale:
                assert batch.formed_ns < deadline  # stale rows never reach the engine
            if deadline is not None and deadline - enqueued >= latency_ms * MS:
                # a feasible deadline is met given the measured latency
                assert batch.formed_ns + latency_ms * MS <= deadline
    reasons = {reason for _, _, reason in drops.seen}
    allowed = ({"stale"} if drop_stale else set()) | ({"superseded"} if latest_per_key else set())
    assert reasons <= allowed
