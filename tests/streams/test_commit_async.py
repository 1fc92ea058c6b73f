"""The at-least-once periodic commit is sent without waiting, and counts only once confirmed.

No broker: the consumer double keeps every commit it is handed and answers the
asynchronous ones only when the test says so, as the group coordinator would from a
later poll.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import SimpleNamespace

import pytest

from streamfer.streams.client import CommitDone, TopicPartition
from streamfer.streams.committer import OffsetCommitter
from streamfer.streams.tracker import OffsetTracker

TP = ("in", 0)


class Coordinator:
    """A consumer's commit calls: ``waited`` (blocking) and ``sent`` (asynchronous, each
    with its ``done``, answered by ``answer``)."""

    def __init__(self) -> None:
        self.waited: list[dict[TopicPartition, int]] = []
        self.sent: list[tuple[dict[TopicPartition, int], CommitDone]] = []

    def commit(self, positions: Mapping[TopicPartition, int], timeout_s: float) -> None:
        assert timeout_s > 0, "a blocking commit needs a bound"
        self.waited.append(dict(positions))

    def commit_async(self, positions: Mapping[TopicPartition, int], done: CommitDone) -> None:
        assert positions, "an empty commit is never sent"
        self.sent.append((dict(positions), done))

    def answer(self, i: int, error: str | None = None) -> None:
        positions, done = self.sent[i]
        done(positions, error)


def rig() -> tuple[OffsetCommitter, OffsetTracker, Coordinator]:
    tracker, client = OffsetTracker(), Coordinator()
    source = SimpleNamespace(
        tracker=tracker, client=client, topics=("in",), revoke_wait_s=1.0,
        options=SimpleNamespace(commit_timeout_s=5.0),
    )  # fmt: skip
    return OffsetCommitter(source), tracker, client  # type: ignore[arg-type]


def resolved(tracker: OffsetTracker, first: int, n: int) -> None:
    tracker.resolve_all(tracker.add(TP, list(range(first, first + n))))


def test_the_periodic_commit_is_sent_and_counts_only_once_the_group_confirms_it() -> None:
    committer, tracker, client = rig()
    resolved(tracker, 0, 3)
    assert committer.commit(wait=False) == {TP: 3}
    assert client.sent[0][0] == {TP: 3} and client.waited == []
    assert tracker.positions() == {TP: 3}, "not confirmed yet: still to commit"
    assert committer.commit(wait=False) == {}, "the same positions are on their way already"
    assert len(client.sent) == 1
    client.answer(0)
    assert tracker.positions() == {}
    assert committer.commit(wait=False) == {}
    resolved(tracker, 3, 2)
    assert committer.commit(wait=False) == {TP: 5}
    assert [p for p, _ in client.sent] == [{TP: 3}, {TP: 5}]


def test_a_failed_periodic_commit_is_sent_again_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    committer, tracker, client = rig()
    resolved(tracker, 0, 4)
    committer.commit(wait=False)
    with caplog.at_level(logging.WARNING, logger="streamfer.streams.committer"):
        client.answer(0, "REBALANCE_IN_PROGRESS")
    assert "REBALANCE_IN_PROGRESS" in caplog.text and "sent again" in caplog.text
    assert tracker.positions() == {TP: 4}
    assert committer.commit(wait=False) == {TP: 4}
    assert [p for p, _ in client.sent] == [{TP: 4}, {TP: 4}]


def test_what_is_unconfirmed_goes_with_the_final_and_the_revocation_commit() -> None:
    committer, tracker, client = rig()
    resolved(tracker, 0, 2)
    committer.commit(wait=False)  # never answered (e.g. the coordinator moved)
    committer.close(wait_s=1.0)
    assert client.waited == [{TP: 2}], "the final commit waits for what was only sent"
    assert tracker.positions() == {}

    committer, tracker, client = rig()
    resolved(tracker, 0, 2)
    committer.commit(wait=False)
    assert committer.on_revoke([TP], lost=False) == {TP: 2}, "the revocation commits it"


def test_a_late_answer_for_older_positions_does_not_hide_newer_ones() -> None:
    committer, tracker, client = rig()
    resolved(tracker, 0, 2)
    committer.commit(wait=False)
    resolved(tracker, 2, 2)
    committer.commit(wait=False)  # newer positions sent before the first answer
    client.answer(0)
    assert tracker.positions() == {TP: 4}
    client.answer(1)
    assert tracker.positions() == {}
