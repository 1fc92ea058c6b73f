"""OffsetTracker: commits never pass an unresolved record, whatever the resolution order."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.tracker import OffsetTracker

TP = ("t", 0)


@st.composite
def polled_and_order(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    gaps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=60))
    offsets, at = [], draw(st.integers(0, 1000))
    for gap in gaps:
        offsets.append(at)
        at += gap  # gaps stand for transaction markers / compacted records
    order = draw(st.permutations(offsets))
    stop = draw(st.integers(0, len(order)))
    return offsets, list(order), stop


@given(polled_and_order())
@settings(max_examples=300, deadline=None)
def test_position_is_after_the_resolved_prefix_only(case: tuple[list[int], list[int], int]) -> None:
    offsets, order, stop = case
    tracker = OffsetTracker()
    tracker.add(TP, offsets[: len(offsets) // 2])
    tracker.add(TP, offsets[len(offsets) // 2 :])
    resolved: set[int] = set()
    for offset in order[:stop]:
        assert tracker.resolve(TP, offset)
        resolved.add(offset)
        position = tracker.positions().get(TP)
        first_unresolved = next((o for o in offsets if o not in resolved), None)
        prefix = [o for o in offsets if first_unresolved is None or o < first_unresolved]
        # exactly after the resolved prefix: never past an unresolved record, never short
        assert position == (prefix[-1] + 1 if prefix else None)
    assert tracker.in_flight(TP) == len(offsets) - stop


def test_resolving_twice_or_unknown_reports_false() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, [5, 6, 7])
    assert tracker.is_pending(TP, 6)
    assert tracker.resolve(TP, 6)
    assert not tracker.is_pending(TP, 6)
    assert not tracker.resolve(TP, 6)
    assert not tracker.resolve(TP, 99)
    assert not tracker.resolve(("other", 0), 5)
    assert tracker.positions() == {}
    assert tracker.resolve_many([(TP, 5), (TP, 5), (TP, 7)]) == 2
    assert tracker.positions() == {TP: 8}


def test_committed_positions_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, [0, 1])
    tracker.resolve(TP, 0)
    assert tracker.positions() == {TP: 1}
    tracker.mark_committed({TP: 1})
    assert tracker.positions() == {}
    tracker.resolve(TP, 1)
    assert tracker.positions() == {TP: 2}


def test_remove_abandons_in_flight_and_ignores_late_resolves() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, [0, 1, 2])
    tracker.resolve(TP, 0)
    tracker.resolve(TP, 2)
    assert tracker.remove([TP]) == {TP: 1}
    assert tracker.in_flight() == 0
    assert not tracker.resolve(TP, 1)
    assert tracker.positions() == {}


def test_wait_idle_returns_when_another_thread_resolves() -> None:
    tracker = OffsetTracker()
    tracker.add(TP, list(range(100)))
    tracker.add(("t", 1), [0])
    assert not tracker.wait_idle([TP], timeout_s=0.01)
    worker = threading.Thread(target=lambda: [tracker.resolve(TP, o) for o in reversed(range(100))])
    worker.start()
    assert tracker.wait_idle([TP], timeout_s=10)
    worker.join()
    assert tracker.positions() == {TP: 100}
    assert tracker.in_flight() == 1
    assert not tracker.wait_idle(None, timeout_s=0.01)


@given(st.lists(st.integers(0, 199), unique=True, max_size=200))
@settings(max_examples=50, deadline=None)
def test_concurrent_resolvers_never_commit_past_a_gap(missing_seed: list[int]) -> None:
    tracker = OffsetTracker()
    tracker.add(TP, range(200))
    holdout = min(missing_seed) if missing_seed else None
    todo = [o for o in range(200) if o != holdout]
    threads = [
        threading.Thread(target=lambda part=todo[i::4]: [tracker.resolve(TP, o) for o in part])
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = holdout if holdout is not None else 200
    assert tracker.positions().get(TP, 0) == expected


def test_a_record_of_an_earlier_generation_does_not_resolve_the_re_added_one() -> None:
    tracker = OffsetTracker()
    old = tracker.add(TP, [0, 1])
    assert tracker.generation(TP) == old
    tracker.remove([TP])  # abort and rewind: 0 and 1 are polled again
    new = tracker.add(TP, [0, 1])
    assert new != old
    assert not tracker.is_pending(TP, 0, old) and tracker.is_pending(TP, 0, new)
    assert not tracker.resolve(TP, 0, old)
    assert tracker.resolve_many([(TP, 1, old)]) == 0
    assert tracker.in_flight(TP) == 2 and tracker.positions() == {}
    assert tracker.resolve_many([(TP, 0, new), (TP, 1, new)]) == 2
    assert tracker.positions() == {TP: 2}
