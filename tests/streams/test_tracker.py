"""OffsetTracker: commits never pass an unresolved record, whatever the resolution order."""

from __future__ import annotations

import threading

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfer.streams.tracker import OffsetTracker, Span

TP = ("t", 0)


@st.composite
def polls_and_order(draw: st.DrawFn) -> tuple[list[list[int]], list[tuple[int, int]], int]:
    """Offsets (with gaps) cut into polls, and an order in which to resolve every row."""
    gaps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=60))
    offsets, at = [], draw(st.integers(0, 1000))
    for gap in gaps:
        offsets.append(at)
        at += gap  # gaps stand for transaction markers / compacted records
    cuts = sorted(set(draw(st.lists(st.integers(1, len(offsets)), max_size=5))) | {len(offsets)})
    polls, start = [], 0
    for cut in cuts:
        if cut > start:
            polls.append(offsets[start:cut])
            start = cut
    rows = [(p, r) for p, poll in enumerate(polls) for r in range(len(poll))]
    order = draw(st.permutations(rows))
    stop = draw(st.integers(0, len(order)))
    return polls, list(order), stop


@given(polls_and_order())
@settings(max_examples=300, deadline=None)
def test_position_is_after_the_last_fully_resolved_poll_only(
    case: tuple[list[list[int]], list[tuple[int, int]], int],
) -> None:
    polls, order, stop = case
    tracker = OffsetTracker()
    spans = [tracker.add(TP, poll) for poll in polls]
    resolved: set[tuple[int, int]] = set()
    for p, r in order[:stop]:
        assert tracker.resolve(spans[p], r)
        resolved.add((p, r))
        done = [all((p2, r2) in resolved for r2 in range(len(poll))) for p2, poll in
                enumerate(polls)]  # fmt: skip
        prefix = next((i for i, d in enumerate(done) if not d), len(polls))
        # after the last poll of the fully resolved prefix: never past an unresolved record
        expected = polls[prefix - 1][-1] + 1 if prefix else None
        assert tracker.positions().get(TP) == expected
    assert tracker.in_flight(TP) == sum(map(len, polls)) - stop


def test_resolving_twice_or_after_abandonment_reports_false() -> None:
    tracker = OffsetTracker()
    span = tracker.add(TP, [5, 6, 7])
    assert tracker.is_pending(span, 1)
    assert tracker.resolve(span, 1)
    assert not tracker.is_pending(span, 1)
    assert not tracker.resolve(span, 1)
    assert tracker.positions() == {}
    assert tracker.resolve_rows(span, np.array([0, 0, 2, 1])) == 2  # each row counts once
    assert tracker.positions() == {TP: 8}
    assert tracker.resolve_all(span) == 0


def test_resolve_all_and_rows_move_the_position_by_whole_polls() -> None:
    tracker = OffsetTracker()
    first, second = tracker.add(TP, [0, 1, 2]), tracker.add(TP, [3, 5])
    assert tracker.resolve_all(second) == 2
    assert tracker.positions() == {}  # the first poll is still open
    assert tracker.resolve_rows(first, [2, 0]) == 2
    assert tracker.positions() == {} and tracker.in_flight() == 1
    assert tracker.resolve_all(first) == 1
    assert tracker.positions() == {TP: 6} and tracker.in_flight() == 0


def test_committed_positions_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    a, b = tracker.add(TP, [0]), tracker.add(TP, [1])
    tracker.resolve(a, 0)
    assert tracker.positions() == {TP: 1}
    tracker.mark_committed({TP: 1})
    assert tracker.positions() == {}
    tracker.resolve(b, 0)
    assert tracker.positions() == {TP: 2}


def test_remove_abandons_in_flight_and_ignores_late_resolves() -> None:
    tracker = OffsetTracker()
    done, open_ = tracker.add(TP, [0]), tracker.add(TP, [1, 2])
    tracker.resolve(done, 0)
    tracker.resolve(open_, 1)
    assert tracker.remove([TP]) == {TP: 1}
    assert tracker.in_flight() == 0
    assert not open_.alive and not tracker.is_pending(open_, 0)
    assert not tracker.resolve(open_, 0)
    assert tracker.resolve_all(open_) == 0
    assert tracker.positions() == {}


def test_wait_idle_returns_when_another_thread_resolves() -> None:
    tracker = OffsetTracker()
    spans = [tracker.add(TP, [i]) for i in range(100)]
    tracker.add(("t", 1), [0])
    assert not tracker.wait_idle([TP], timeout_s=0.01)
    worker = threading.Thread(target=lambda: [tracker.resolve(s, 0) for s in reversed(spans)])
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
    spans = [tracker.add(TP, list(range(i, i + 10))) for i in range(0, 200, 10)]
    holdout = min(missing_seed) if missing_seed else None
    todo = [o for o in range(200) if o != holdout]

    def resolve(part: list[int]) -> None:
        for o in part:
            assert tracker.resolve(spans[o // 10], o % 10)

    threads = [threading.Thread(target=resolve, args=(todo[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = holdout - holdout % 10 if holdout is not None else 200
    assert tracker.positions().get(TP, 0) == expected


def test_a_re_polled_record_is_not_resolved_by_its_abandoned_copy() -> None:
    tracker = OffsetTracker()
    old = tracker.add(TP, [0, 1])
    tracker.remove([TP])  # abort and rewind: 0 and 1 are polled again
    new = tracker.add(TP, [0, 1])
    assert isinstance(new, Span) and new is not old
    assert not tracker.is_pending(old, 0) and tracker.is_pending(new, 0)
    assert not tracker.resolve(old, 0)
    assert tracker.resolve_rows(old, [1]) == 0
    assert tracker.in_flight(TP) == 2 and tracker.positions() == {}
    assert tracker.resolve_rows(new, [0, 1]) == 2
    assert tracker.positions() == {TP: 2}


def test_oldest_unresolved_is_the_first_pending_row_of_the_oldest_span() -> None:
    tracker = OffsetTracker()
    first = tracker.add(TP, [0, 1, 2], [1_000, 2_000, 3_000])
    second = tracker.add(TP, [3, 4], [4_000, 5_000])
    tracker.add(("t", 1), [7], [9_000])
    assert tracker.oldest_unresolved_ms() == {TP: 1_000, ("t", 1): 9_000}
    tracker.resolve(first, 0)
    tracker.resolve_all(second)  # a newer span resolved first changes nothing
    assert tracker.oldest_unresolved_ms()[TP] == 2_000
    tracker.resolve_rows(first, [1, 2])  # all of TP resolved: no age left
    assert TP not in tracker.oldest_unresolved_ms()


def test_a_held_span_is_late_only_while_it_has_undecided_rows() -> None:
    tracker = OffsetTracker()
    window = [tracker.add(TP, [0, 1], [1_000, 2_000]), tracker.add(TP, [2], [3_000])]
    later = tracker.add(TP, [3, 4], [4_000, 5_000])
    for span in window:
        tracker.hold(span)
    tracker.resolve(window[0], 1)
    assert tracker.oldest_unresolved_ms() == {TP: 1_000}  # held, and row 0 undecided
    tracker.resolve(window[0], 0)
    # decided, held for their state entries: not late, so the age is the next undecided row
    assert tracker.oldest_unresolved_ms() == {TP: 3_000}
    tracker.resolve_all(window[1])
    assert tracker.oldest_unresolved_ms() == {TP: 4_000}
    assert tracker.positions() == {}  # still held: the commit waits for the entries
    tracker.resolve_all(later)
    assert tracker.oldest_unresolved_ms() == {}  # everything decided, nothing late
    tracker.release_many(window)
    assert tracker.positions() == {TP: 5}
