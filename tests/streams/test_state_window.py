"""Coalesced changelog writes: one entry per key per window, and restore still exact.

The simulation drives the real StateManager, ChangelogWriter, OffsetTracker and
restore rule (Merge) through polls, commits, decisions resolved out of order and
late acknowledgements, and at every step restores from the changelog as a crash
then would: the state must equal the state after exactly the committed records.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from streamfer.streams.client import Outgoing
from streamfer.streams.records import RecordBatch
from streamfer.streams.state import LocalStore, StateCommitter, StateManager, StateOptions
from streamfer.streams.state.changelog import ChangelogWriter
from streamfer.streams.state.entry import unpack_entry
from streamfer.streams.state.restore import Merge
from streamfer.streams.tracker import OffsetTracker, Span, SpanGroup

TP = ("in", 0)


class Tally:
    """A mutable state value: how many records a key had, and the offset of the last."""

    __slots__ = ("last", "n")

    def __init__(self, n: int, last: int) -> None:
        self.n, self.last = n, last


class TallyCodec:
    def encode(self, value: Tally) -> bytes:
        return f"{value.n},{value.last}".encode()

    def decode(self, payload: bytes) -> Tally:
        n, last = payload.decode().split(",")
        return Tally(int(n), int(last))

    def seen_ms(self, value: Tally) -> int:
        return 0


class EmptyChangelog:
    """A reader of an empty changelog partition (restore reads nothing)."""

    def offsets(self, tp: tuple[str, int], timeout_s: float) -> tuple[int, int]:
        return 0, 0

    def close(self) -> None:
        pass


class Listener:
    def state_restored(self, partition: int, seconds: float, keys: int, source: str) -> None:
        pass

    def state_expired(self, n: int) -> None:
        pass


class Sink:
    """Keeps every entry sent, in order, and the delivery callbacks not yet called."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes | None]] = []
        self.unacked: list[Any] = []

    def send_many(self, out: Outgoing, only_if: Any = None) -> bool:
        if only_if is not None and not only_if():
            return False
        self.sent += zip(out.keys, out.values, strict=True)
        self.unacked += [out.on_delivery] * len(out.keys)
        return True

    def ack(self, n: int) -> None:
        for callback in self.unacked[:n]:
            callback(None, None)
        del self.unacked[:n]


class Inner:
    """The at-least-once committer's part that matters here: commit the tracker's position."""

    def __init__(self, tracker: OffsetTracker) -> None:
        self.tracker = tracker
        self.committed = 0

    def commit(self, wait: bool = True) -> dict[tuple[str, int], int]:
        positions = self.tracker.positions()
        self.tracker.mark_committed(positions)
        self.committed = positions.get(TP, self.committed)
        return positions

    def on_revoke(self, tps: list[tuple[str, int]], lost: bool) -> Mapping[tuple[str, int], int]:
        return {}

    def before_poll(self) -> bool:
        return True

    def close(self, wait_s: float) -> None:
        pass

    def abort(self) -> None:
        pass


class Rig:
    def __init__(self, tmp: Path, flush_interval_s: float = 0.0) -> None:
        self.tracker = OffsetTracker()
        self.sink = Sink()
        writer = ChangelogWriter(self.sink, "cl", self.tracker, self.fail)  # type: ignore[arg-type]
        self.state: StateManager[Tally] = StateManager(
            stream="s",
            input_topic=TP[0],
            codec=TallyCodec(),
            options=StateOptions(dir=tmp, ttl_s=None, cache_keys=3, restore_timeout_s=5),
            writer=writer,
            reader=EmptyChangelog,  # type: ignore[arg-type]
            committed=lambda tp: None,
            listener=Listener(),
            topic_exists=lambda topic: True,
        )
        self.state.assigned([TP])
        self.inner = Inner(self.tracker)
        self.now = 100.0
        self.committer = StateCommitter(
            self.inner, self.state, flush_interval_s, lambda: self.now  # type: ignore[arg-type]
        )
        self.next_offset = 0

    def fail(self, exc: BaseException) -> None:
        raise AssertionError(exc)

    def poll(self, keys: list[str]) -> tuple[Span, list[int]]:
        """One poll of ``keys`` prepared as a processor would (counting each key)."""
        offsets = list(range(self.next_offset, self.next_offset + len(keys)))
        self.next_offset += len(keys)
        span = self.tracker.add(TP, offsets)
        batch = RecordBatch(TP[0], TP[1], offsets, [k.encode() for k in keys], [b""] * len(keys),
                            [None] * len(keys), [0] * len(keys), 0, span=span)  # fmt: skip
        view = self.state.view(TP[1])
        for key, offset in zip(keys, offsets, strict=True):
            (value,) = view.get_many([key])
            if value is None:
                view.put(key, Tally(1, offset))
            else:
                value.n, value.last = value.n + 1, offset
            view.updated([key], [offset])
        self.state.write(batch, view)
        return span, offsets


def entries(sent: list[tuple[bytes, bytes | None]]) -> dict[bytes, tuple[int, bytes]]:
    out = {}
    for key, value in sent:
        assert value is not None
        e = unpack_entry(value, "cl[0]")
        out.setdefault(key, []).append((e.offset, e.payload))  # type: ignore[attr-defined]
    return out  # type: ignore[return-value]


def test_updates_of_a_key_in_one_window_become_one_entry_with_its_last_offset(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    spans = [rig.poll(keys)[0] for keys in (["a", "b"], ["a"], ["c", "a", "b"])]
    assert rig.sink.sent == []  # nothing is written per poll
    for span in spans:
        rig.tracker.resolve_all(span)
    assert rig.committer.commit() == {}  # the flush's entries are not acknowledged yet
    got = {k: (unpack_entry(v or b"", "t").offset, unpack_entry(v or b"", "t").payload)
           for k, v in rig.sink.sent}  # fmt: skip
    assert len(rig.sink.sent) == 3
    assert got == {b"a": (4, b"3,4"), b"b": (5, b"2,5"), b"c": (3, b"1,3")}
    rig.sink.ack(2)
    assert rig.committer.commit() == {}  # one entry of the window still unacknowledged
    rig.sink.ack(1)
    assert rig.committer.commit() == {TP: 6}
    rig.poll(["a"])
    rig.committer.commit()
    assert [unpack_entry(v or b"", "t").offset for _, v in rig.sink.sent[3:]] == [6]


def test_periodic_commits_flush_once_per_flush_interval_and_commit_the_window_after(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, flush_interval_s=1.0)
    spans = [rig.poll(keys)[0] for keys in (["a", "b"], ["a"])]
    for span in spans:
        rig.tracker.resolve_all(span)
    rig.now += 0.5
    assert rig.committer.commit(wait=False) == {}  # held: the window is not flushed yet
    assert rig.sink.sent == []
    spans.append(rig.poll(["a", "c"])[0])  # the same window: still one entry per key
    rig.tracker.resolve_all(spans[-1])
    rig.now += 0.5
    rig.committer.commit(wait=False)
    assert sorted(k for k, _ in rig.sink.sent) == [b"a", b"b", b"c"]
    assert unpack_entry(dict(rig.sink.sent)[b"a"] or b"", "t").offset == 3
    rig.sink.ack(3)
    assert rig.committer.commit(wait=False) == {TP: 5}  # released: commits need no flush
    rig.poll(["b"])
    rig.now += 0.1
    rig.committer.commit(wait=False)
    assert len(rig.sink.sent) == 3  # a new window, not due
    rig.committer.commit(wait=True)  # an explicit commit flushes whatever the interval
    assert [k for k, _ in rig.sink.sent[3:]] == [b"b"]
    rig.poll(["c"])
    rig.committer.on_revoke([TP], lost=False)  # and so does a revocation
    assert [k for k, _ in rig.sink.sent[4:]] == [b"c"]


def test_a_window_is_passed_whole_whatever_order_its_decisions_resolve_in() -> None:
    tracker = OffsetTracker()
    group = SpanGroup()
    spans = [tracker.add(TP, [i * 10, i * 10 + 1]) for i in range(3)]
    for span in spans:
        assert tracker.hold(span, group)
    tracker.release_many(spans)
    tracker.resolve_all(spans[0])
    tracker.resolve_all(spans[1])
    assert tracker.positions() == {}  # not at 12: the third poll of the window is in flight
    tracker.resolve_all(spans[2])
    assert tracker.positions() == {TP: 22}


def reference(records: list[str], committed: int) -> dict[bytes, bytes]:
    """Each key's value after exactly the records before ``committed``."""
    state: dict[str, Tally] = {}
    for offset, key in enumerate(records[:committed]):
        old = state.get(key)
        state[key] = Tally(old.n + 1 if old else 1, offset)
    return {k.encode(): TallyCodec().encode(v) for k, v in state.items()}


def restored(store: LocalStore, sent: list[tuple[bytes, bytes | None]],
             committed: int) -> dict[bytes, bytes]:  # fmt: skip
    store.wipe()
    Merge(store, committed, "cl[0]").apply([k for k, _ in sent], [v for _, v in sent])
    return {k: unpack_entry(v, "t").payload for k, v in store.scan(None, 1_000)}


def events(seed: int) -> Iterator[str]:
    rnd = random.Random(seed)
    for _ in range(80):
        yield rnd.choice(["poll", "poll", "resolve", "resolve", "resolve", "ack", "commit"])
    yield from ["resolve"] * 200 + ["commit", "ack", "ack"] * 20


@pytest.mark.parametrize("seed", range(40))
def test_restore_after_a_crash_at_any_point_equals_the_committed_records(
    tmp_path: Path, seed: int
) -> None:
    rnd = random.Random(seed)
    rig = Rig(tmp_path / "state")
    records: list[str] = []
    unresolved: list[tuple[Span, list[int]]] = []  # (span, rows not resolved yet)
    checked = 0
    with LocalStore(tmp_path / "restore") as store:
        for event in events(seed):
            if event == "poll":
                keys = [rnd.choice("abcde") for _ in range(rnd.randint(1, 4))]
                records += keys
                span, offsets = rig.poll(keys)
                unresolved.append((span, list(range(len(offsets)))))
            elif event == "resolve" and unresolved:  # decisions resolve in any order
                span, rows = unresolved.pop(rnd.randrange(len(unresolved)))
                rnd.shuffle(rows)
                cut = rnd.randint(1, len(rows))
                rig.tracker.resolve_rows(span, rows[:cut])
                if rows[cut:]:
                    unresolved.append((span, rows[cut:]))
            elif event == "ack":
                rig.sink.ack(rnd.randint(1, 3))
            elif event == "commit":
                rig.committer.commit()
            # a crash now: the group restarts from the last committed offset, with the
            # entries sent so far (acknowledged or not: an unacknowledged one may have landed)
            rig.inner.commit()  # what the next commit would take: any position may be committed
            committed = rig.inner.committed
            want = reference(records, committed)
            assert restored(store, rig.sink.sent, committed) == want, (seed, committed)
            acked = rig.sink.sent[: len(rig.sink.sent) - len(rig.sink.unacked)]
            assert restored(store, acked, committed) == want, (seed, committed)
            checked += 0 < committed < len(records)
    assert checked and rig.inner.committed == len(records)  # commits mid-way and at the end


def test_a_partition_restored_anew_while_held_writes_its_window_first(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    span, _ = rig.poll(["a", "b", "a"])
    rig.state.assigned([TP])  # assigned again: the next view() restores it anew
    rig.state.view(TP[1])
    assert [(k, unpack_entry(v or b"", "t").offset) for k, v in rig.sink.sent] == [
        (b"a", 2), (b"b", 1)
    ]  # fmt: skip
    rig.tracker.resolve_all(span)
    rig.sink.ack(2)
    assert rig.committer.commit() == {TP: 3}
