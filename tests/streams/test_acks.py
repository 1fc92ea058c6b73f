"""Acknowledgements resolve records in streams/: at the last ack, once, never when abandoned."""

from __future__ import annotations

import threading
import time

import numpy as np

from streamfer.streams.acks import AckCount, Resolver
from streamfer.streams.tracker import OffsetTracker

TP = ("tx", 0)


class Listener:
    """What the resolver said resolved (the Resolutions a stream's recorder implements)."""

    def __init__(self) -> None:
        self.decisions: list[tuple[list[float], float]] = []
        self.drops: list[tuple[str, int]] = []
        self.letters: list[tuple[str, int]] = []
        self.absorbs: list[int] = []

    def decided(self, e2e_ms: np.ndarray, publish_s: float) -> None:
        self.decisions.append((e2e_ms.tolist(), publish_s))

    def dropped(self, reason: str, n: int = 1) -> None:
        self.drops.append((reason, n))

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        self.letters.append((reason, n))

    def absorbed(self, n: int) -> None:
        self.absorbs.append(n)


def setup() -> tuple[OffsetTracker, Resolver, Listener]:
    tracker = OffsetTracker()
    told = Listener()
    return tracker, Resolver(tracker, told), told


def test_decisions_resolve_at_the_last_ack_and_are_counted_once_with_their_e2e() -> None:
    tracker, resolver, told = setup()
    span = tracker.add(TP, [10, 11, 12, 13])
    failures: list[object] = []
    acks = resolver.decisions(span, np.array([0, 1, 2]), np.array([5.0, 6.0, 7.0]), 0,
                              time.monotonic_ns(), failures.append)  # fmt: skip
    acks(None, None)
    acks(None, None)
    assert tracker.in_flight() == 4 and told.decisions == []  # two of three: nothing yet
    acks(None, None)
    assert tracker.in_flight() == 1 and tracker.positions() == {}  # row 3 still pending
    ((e2e, publish_s),) = told.decisions
    assert len(e2e) == 3 and all(ms >= broker for ms, broker in zip(e2e, [5, 6, 7], strict=True))
    assert 0 <= publish_s < 60 and failures == []
    resolver.drop(span, [3], "stale")
    assert tracker.positions() == {TP: 14} and told.drops == [("stale", 1)]


def test_a_failed_ack_calls_on_failure_once_and_resolves_nothing() -> None:
    tracker, resolver, told = setup()
    span = tracker.add(TP, [0, 1])
    failures: list[object] = []
    acks = resolver.decisions(span, np.array([0, 1]), np.zeros(2), 0, 0, failures.append)
    acks("broker down", None)
    acks("broker down", None)
    assert failures == ["broker down"]
    assert tracker.in_flight() == 2 and tracker.positions() == {} and told.decisions == []


def test_acks_of_an_abandoned_span_count_nothing() -> None:
    tracker, resolver, told = setup()
    span = tracker.add(TP, [0, 1])
    acks = resolver.decisions(span, np.array([0, 1]), np.zeros(2), 0, 0, lambda _e: None)
    letter = resolver.dead_letter(span, 1, "bad_json", lambda _e: None)
    tracker.remove([TP])  # revoked meanwhile: the next owner decides them again
    acks(None, None)
    acks(None, None)
    letter(None, None)
    assert told.decisions == [] and told.letters == []
    assert not resolver.drop(span, [0], "stale") and not resolver.absorb(span, [1])


def test_a_dead_letter_resolves_its_row_when_acknowledged_or_reports_its_failure() -> None:
    tracker, resolver, told = setup()
    span = tracker.add(TP, [0, 1])
    failures: list[object] = []
    resolver.dead_letter(span, 0, "bad_json", failures.append)("timed out", None)
    assert failures == ["timed out"] and tracker.in_flight() == 2
    assert resolver.drop_row(span, 0, "dead_letter_failed")
    resolver.dead_letter(span, 1, "bad_json", failures.append)(None, None)
    assert told.letters == [("bad_json", 1)] and told.drops == [("dead_letter_failed", 1)]
    assert tracker.positions() == {TP: 2}


def test_absorbed_rows_resolve_and_are_counted() -> None:
    tracker, resolver, told = setup()
    span = tracker.add(TP, [0, 1, 2])
    assert resolver.absorb(span, np.array([0, 2])) == 2
    assert resolver.absorb(span, np.array([0])) == 0  # each row counts once
    assert told.absorbs == [2] and tracker.in_flight() == 1


def test_ack_count_fires_once_at_the_last_ack_across_threads() -> None:
    fired: list[str] = []

    class Last(AckCount):
        def acked(self) -> None:
            fired.append("acked")

        def failed(self, error: object) -> None:
            fired.append("failed")

    acks = Last(4000)
    threads = [
        threading.Thread(target=lambda: [acks(None, None) for _ in range(1000)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fired == ["acked"]
