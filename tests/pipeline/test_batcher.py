"""The batcher: flush rules, drops, and that every item is resolved exactly once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.batcher import AlreadyResolved, Batch, Batcher, Completion, LatencyModel

MS = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make(clock: FakeClock, **kw: object) -> Batcher[int]:
    opts: dict = {"max_batch": 4, "max_wait_ns": 5 * MS, "clock": clock}
    opts.update(kw)
    return Batcher(**opts)


def test_flushes_when_full() -> None:
    clock = FakeClock()
    b = make(clock)
    for i in range(5):
        b.put(i, Completion())
    batch = b.poll()
    assert batch is not None and batch.reason == "full"
    assert batch.payloads == [0, 1, 2, 3]
    assert len(b) == 1


def test_flushes_after_max_wait_of_oldest() -> None:
    clock = FakeClock()
    b = make(clock)
    b.put(1, Completion())
    clock.now = 3 * MS
    b.put(2, Completion())
    assert b.poll() is None
    assert b.next_flush_ns() == 5 * MS
    clock.now = 5 * MS
    batch = b.poll()
    assert batch is not None and batch.reason == "wait" and batch.payloads == [1, 2]


def test_flushes_early_for_deadline_given_measured_latency() -> None:
    clock = FakeClock()
    b = make(clock, max_wait_ns=50 * MS)
    b.observe(2, 10 * MS)
    b.put(1, Completion(), deadline_ns=30 * MS)
    b.put(2, Completion(), deadline_ns=100 * MS)
    # two items, a 2-batch takes 10 ms, the first deadline is 30 ms: flush by 20 ms
    assert b.next_flush_ns() == 20 * MS
    clock.now = 19 * MS
    assert b.poll() is None
    clock.now = 20 * MS
    batch = b.poll()
    assert batch is not None and batch.reason == "deadline" and len(batch) == 2


def test_stale_items_are_dropped_with_reason() -> None:
    clock = FakeClock()
    b = make(clock, drop_stale=True)
    late, fresh, early = Completion(), Completion(), Completion()
    clock.now = 10 * MS
    b.put(0, late, deadline_ns=5 * MS)  # already past: dropped at once
    assert late.kind == "dropped" and late.reason == "stale"
    b.put(1, early, deadline_ns=12 * MS)
    b.put(2, fresh, deadline_ns=100 * MS)
    clock.now = 12 * MS
    batch = b.poll()
    assert early.reason == "stale"
    assert batch is None and len(b) == 1


def test_without_drop_policy_late_items_still_go_through() -> None:
    clock = FakeClock()
    b = make(clock, drop_stale=False)
    c = Completion()
    clock.now = 10 * MS
    b.put(0, c, deadline_ns=5 * MS)
    batch = b.poll()
    assert batch is not None and batch.payloads == [0] and not c.done


def test_latest_per_key_supersedes_older_item() -> None:
    clock = FakeClock()
    b = make(clock, latest_per_key=True)
    first, second, other = Completion(), Completion(), Completion()
    b.put(1, first, key="cam-1")
    b.put(2, other, key="cam-2")
    b.put(3, second, key="cam-1")
    assert first.kind == "dropped" and first.reason == "superseded"
    batch = b.drain()[0]
    assert batch.payloads == [2, 3]


def test_completion_resolves_once() -> None:
    seen: list[Completion] = []
    c = Completion(seen.append)
    c.set_result("ok")
    with pytest.raises(AlreadyResolved):
        c.drop("stale")
    assert seen == [c] and c.value == "ok"


def test_latency_model_estimates_unseen_sizes_conservatively() -> None:
    m = LatencyModel()
    assert m.estimate_ns(8) == 0
    m.observe(4, 4 * MS)
    m.observe(16, 10 * MS)
    assert m.estimate_ns(4) == 4 * MS
    assert m.estimate_ns(8) == 10 * MS  # bounded by the next larger size
    assert m.estimate_ns(32) == 20 * MS  # scaled from the largest known


def test_fail_all_resolves_queued_items() -> None:
    clock = FakeClock()
    b = make(clock)
    cs = [Completion() for _ in range(6)]
    for i, c in enumerate(cs):
        b.put(i, c)
    b.fail_all(RuntimeError("engine gone"))
    assert all(c.kind == "error" for c in cs) and len(b) == 0


# --- properties ---------------------------------------------------------------

put_op = st.tuples(
    st.integers(0, 8 * MS),  # time until this put
    st.one_of(st.none(), st.integers(0, 40 * MS)),  # deadline budget from now
    st.one_of(st.none(), st.integers(0, 3)),  # key
)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(put_op, max_size=60),
    max_batch=st.integers(1, 8),
    max_wait_ms=st.integers(0, 10),
    latency_ms=st.integers(0, 5),
    drop_stale=st.booleans(),
    latest_per_key=st.booleans(),
    fail_every=st.integers(0, 4),
)
def test_properties_hold_for_any_arrival_pattern(
    ops: list[tuple[int, int | None, int | None]],
    max_batch: int,
    max_wait_ms: int,
    latency_ms: int,
    drop_stale: bool,
    latest_per_key: bool,
    fail_every: int,
) -> None:
    clock = FakeClock()
    latency = LatencyModel()
    for size in range(1, max_batch + 1):
        latency.observe(size, latency_ms * MS)
    b: Batcher[int] = Batcher(
        max_batch,
        max_wait_ms * MS,
        drop_stale=drop_stale,
        latest_per_key=latest_per_key,
        clock=clock,
        latency=latency,
    )
    resolved: list[Completion] = []
    completions: list[Completion] = []
    meta: dict[int, tuple[int, int | None]] = {}  # payload -> (enqueued, deadline)
    batches: list[Batch[int]] = []

    def run_due() -> None:
        # the owner polls exactly when the batcher says a flush is due
        while (due := b.next_flush_ns()) is not None and due <= clock.now:
            batch = b.poll()
            if batch is None:
                break
            batches.append(batch)
            if fail_every and len(batches) % fail_every == 0:
                batch.fail_all(RuntimeError("boom"))
            else:
                for item in batch.items:
                    item.completion.set_result(item.payload)

    for n, (gap, budget, key) in enumerate(ops):
        target = clock.now + gap
        while (due := b.next_flush_ns()) is not None and due <= target:
            clock.now = max(clock.now, due)
            run_due()
        clock.now = target
        deadline = None if budget is None else clock.now + budget
        c = Completion(resolved.append)
        completions.append(c)
        meta[n] = (clock.now, deadline)
        b.put(n, c, deadline_ns=deadline, key=key)
        run_due()
    while (due := b.next_flush_ns()) is not None:
        clock.now = max(clock.now, due)
        run_due()

    # every item resolved exactly once (a second resolution raises)
    assert len(resolved) == len(completions)
    assert all(c.done for c in completions)
    assert len(b) == 0
    for batch in batches:
        assert 1 <= len(batch) <= max_batch
        for item in batch.items:
            enqueued, deadline = meta[item.payload]
            # nobody waits past max_wait
            assert batch.formed_ns - enqueued <= max_wait_ms * MS
            if deadline is not None and drop_stale:
                assert batch.formed_ns < deadline  # stale items never reach the engine
            if deadline is not None and deadline - enqueued >= latency_ms * MS:
                # a feasible deadline is met given the measured latency
                assert batch.formed_ns + latency_ms * MS <= deadline
    reasons = {c.reason for c in completions if c.kind == "dropped"}
    allowed = ({"stale"} if drop_stale else set()) | ({"superseded"} if latest_per_key else set())
    assert reasons <= allowed
