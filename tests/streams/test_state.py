"""streams.state without a broker: entries, the local store, the view, the restore rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest

from streamfer.errors import StateError, StreamError
from streamfer.streams.client import Outgoing
from streamfer.streams.records import RecordBatch
from streamfer.streams.state import Checkpoint, LocalStore, StateView
from streamfer.streams.state.changelog import (
    ChangelogWriter,
    Window,
    changelog_config,
    changelog_topic,
)
from streamfer.streams.state.entry import pack_entry, unpack_entry, unpack_head
from streamfer.streams.state.restore import Merge, plan, restore
from streamfer.streams.tracker import OffsetTracker


class Count(NamedTuple):
    """A tiny state value: how many times a key was seen, and when last."""

    n: int
    last_ms: int


class CountCodec:
    def encode(self, value: Count) -> bytes:
        return f"{value.n},{value.last_ms}".encode()

    def decode(self, payload: bytes) -> Count:
        n, last = payload.decode().split(",")
        return Count(int(n), int(last))

    def seen_ms(self, value: Count) -> int:
        return value.last_ms


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    with LocalStore(tmp_path / "p0") as s:
        yield s


def view(store: LocalStore, ttl_ms: int | None = None, cache_keys: int = 100) -> StateView[Count]:
    return StateView("in[0]", store, CountCodec(), ttl_ms=ttl_ms, cache_keys=cache_keys,
                     next_offset=0)  # fmt: skip


def entry(offset: int, payload: bytes = b"x", seen_ms: int = 0) -> bytes:
    return pack_entry(offset, seen_ms, payload)


# -- entries and the local store -----------------------------------------------------------
def test_an_entry_carries_its_offset_and_event_time() -> None:
    raw = pack_entry(1234, 1_700_000_000_000, b"payload")
    assert unpack_entry(raw, "x") == (1234, 1_700_000_000_000, b"payload")
    with pytest.raises(StateError, match=r"in\[3\] \| state entry of 3 bytes .*Note: expected"):
        unpack_head(b"abc", "in[3]")


def test_the_store_keeps_entries_and_a_checkpoint(store: LocalStore) -> None:
    store.write([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    store.write([], [b"b"])
    assert store.get_many([b"a", b"b", b"c"]) == [b"1", None, b"3"]
    assert [k for k, _ in store.scan(None, 10)] == [b"a", b"c"]
    assert store.scan(b"a", 10) == [(b"c", b"3")]
    assert store.checkpoint() is None
    store.set_checkpoint(Checkpoint(next_offset=40, changelog_end=7))
    assert store.checkpoint() == Checkpoint(40, 7)
    store.wipe()
    assert len(store) == 0 and store.checkpoint() is None


def test_a_store_that_cannot_be_made_says_where(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StateError, match=r"cannot open the state store.*Note: state\.dir"):
        LocalStore(tmp_path / "file" / "p0").open()


# -- the view ----------------------------------------------------------------------------------
def test_flush_encodes_each_updated_key_once_with_its_last_offset(store: LocalStore) -> None:
    v = view(store)
    assert v.get_many(["a", "b"]) == [None, None]
    v.put("a", Count(1, 10))
    v.put("b", Count(1, 11))
    v.updated(["a", "b", "a"], [100, 101, 102])
    keys, values = v.flush(103)
    got = {k: unpack_entry(val, "t") for k, val in zip(keys, values, strict=True)}  # type: ignore[arg-type]
    assert got == {b"a": (102, 10, b"1,10"), b"b": (101, 11, b"1,11")}
    assert v.next_offset == 103 and v.flush(104) == ([], [])


def test_keys_leaving_the_cache_are_written_behind_and_read_back(store: LocalStore) -> None:
    v = view(store, cache_keys=2)
    for i, key in enumerate("abc"):
        v.put(key, Count(i, i))
        v.updated([key], [i])
        v.flush(i + 1)
    assert len(v) == 2 and store.get(b"a") is not None and store.get(b"c") is None
    assert view(store).get_many(["a"]) == [Count(0, 0)]  # a fresh view reads the store
    v.close(changelog_end=9)
    with LocalStore(store.path) as again:
        assert again.checkpoint() == Checkpoint(3, 9)
        assert {k for k, _ in again.scan(None, 10)} == {b"a", b"b", b"c"}


def test_an_update_without_a_read_or_put_is_refused(store: LocalStore) -> None:
    v = view(store)
    v.updated(["ghost"], [5])
    with pytest.raises(StateError, match=r"in\[0\] \| key 'ghost' updated at offset 5"):
        v.flush(6)


def test_ttl_reads_by_the_reading_records_time_and_sweeps_by_stream_time(
    store: LocalStore,
) -> None:
    v = view(store, ttl_ms=1000, cache_keys=1)
    v.put("old", Count(1, 0))
    v.updated(["old"], [0])
    v.flush(1)
    assert v.get_many(["old"], now_ms=[999]) == [Count(1, 0)]
    assert v.get_many(["old"], now_ms=[1000]) == [None]  # expired for this record
    v.put("new", Count(1, 5000))  # pushes "old" out of the cache into the store
    v.updated(["new"], [1])
    v.flush(2)
    assert v.sweep(100) == [b"old"]  # stream time 5000: "old" (seen 0) is past the TTL
    assert store.get(b"old") is None and v.sweep(100) == []


# -- restore -----------------------------------------------------------------------------------
def test_plan_starts_from_the_store_only_when_its_checkpoint_fits() -> None:
    assert plan(Checkpoint(50, 30), committed=50, first=0, end=40).source == "local"
    assert plan(Checkpoint(50, 30), committed=80, first=0, end=40) == ("local+changelog", 30, False)
    assert plan(Checkpoint(90, 30), committed=80, first=0, end=40) == ("changelog", 0, True)
    assert plan(None, committed=80, first=5, end=40) == ("changelog", 5, True)
    assert plan(Checkpoint(80, 60), committed=80, first=0, end=40).wipe  # changelog recreated


def test_merge_keeps_per_key_the_largest_offset_below_the_committed_one(
    store: LocalStore,
) -> None:
    merge = Merge(store, committed=100, where="cl[0]")
    merge.apply(
        [b"a", b"a", b"b", b"b", b"c", b"d", b"d"],
        [entry(10, b"a10"), entry(120, b"a120"),  # a: its update at 120 is not committed
         entry(60, b"b60"), entry(40, b"b40"),  # b: a zombie's late, older write
         entry(100, b"c100"),  # c: only an uncommitted entry
         entry(5, b"d5"), None],  # d: expired (tombstone)
    )  # fmt: skip
    assert merge.read == 7 and merge.ignored == 2
    stored = {k: unpack_entry(v, "t").payload for k, v in store.scan(None, 10)}
    assert stored == {b"a": b"a10", b"b": b"b60"}
    merge.apply([b"b"], [entry(50, b"b50")])  # a later chunk cannot roll b back either
    assert unpack_entry(store.get(b"b") or b"", "t").payload == b"b60"


class FakeReader:
    """A changelog partition in memory; checks it is asked for that partition."""

    def __init__(self, tp: tuple[str, int], records: list[tuple[bytes, bytes | None]]) -> None:
        self.tp = tp
        self.records = records
        self.at: int | None = None

    def offsets(self, tp: tuple[str, int], timeout_s: float) -> tuple[int, int]:
        assert tp == self.tp and timeout_s > 0
        return 0, len(self.records)

    def assign(self, tp: tuple[str, int], offset: int) -> None:
        assert tp == self.tp and 0 <= offset <= len(self.records)
        self.at = offset

    def poll(self, timeout_s: float, max_records: int) -> list[RecordBatch]:
        assert self.at is not None, "poll before assign"
        chunk = self.records[self.at : self.at + min(max_records, 3)]
        if not chunk:
            return []
        first, self.at = self.at, self.at + len(chunk)
        offsets = list(range(first, self.at))
        keys, values = [k for k, _ in chunk], [v for _, v in chunk]
        blank, zeros = [None] * len(chunk), [0] * len(chunk)
        return [RecordBatch(self.tp[0], self.tp[1], offsets, keys, values, blank, zeros, 0)]

    def position(self, tp: tuple[str, int]) -> int:
        assert tp == self.tp and self.at is not None
        return self.at

    def close(self) -> None:
        pass


def test_restore_reads_the_whole_changelog_without_a_checkpoint(store: LocalStore) -> None:
    store.write([(b"stale", entry(1))])  # left by a crash: not trusted
    records = [(b"k%d" % (i % 4), entry(i, b"%d" % i)) for i in range(10)]
    reader = FakeReader(("cl", 2), records)
    done = restore(store, reader, ("cl", 2), committed=8, timeout_s=5)
    assert done.source == "changelog" and done.keys == 4 and done.read == 10 and done.ignored == 2
    stored = {k: unpack_entry(v, "t").offset for k, v in store.scan(None, 10)}
    assert stored == {b"k0": 4, b"k1": 5, b"k2": 6, b"k3": 7}
    assert store.checkpoint() is None  # in use from now on


def test_restore_from_a_current_checkpoint_reads_nothing(store: LocalStore) -> None:
    store.write([(b"k", entry(3))])
    store.set_checkpoint(Checkpoint(next_offset=8, changelog_end=2))
    reader = FakeReader(("cl", 0), [(b"k", entry(3)), (b"k", entry(9))])
    done = restore(store, reader, ("cl", 0), committed=8, timeout_s=5)
    assert (done.source, done.keys, done.read) == ("local", 1, 0) and reader.at is None


class MissingChangelog(FakeReader):
    """A changelog the cluster cannot give offsets for; each ask takes its timeout on
    ``clock`` (as a client waits it out) and is checked to be short."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__(("cl", 0), [])
        self.clock = clock
        self.asks: list[float] = []

    def offsets(self, tp: tuple[str, int], timeout_s: float) -> tuple[int, int]:
        assert tp == self.tp and 0 < timeout_s <= 2.0, timeout_s
        self.asks.append(timeout_s)
        self.clock[0] += timeout_s
        raise StreamError(f"offsets of {tp[0]}[{tp[1]}] failed: Unknown partition")


@pytest.mark.parametrize(
    ("answers", "fails_with", "by_s"),
    [
        ("missing", StateError, 12.0),  # the cluster says it is not there: fail in the grace
        ("unknown", StreamError, 300.0),  # it cannot be asked: wait the whole timeout
        ("present", StreamError, 300.0),  # there, but no offsets (yet): the whole timeout
    ],
)
def test_a_missing_changelog_fails_the_restore_once_the_cluster_says_so(
    store: LocalStore, answers: str, fails_with: type[Exception], by_s: float
) -> None:
    clock = [0.0]
    asked: list[str] = []

    def exists(topic: str) -> bool | None:
        asked.append(topic)
        return {"missing": False, "unknown": None, "present": True}[answers]

    reader = MissingChangelog(clock)
    with pytest.raises(fails_with) as err:
        restore(store, reader, ("cl", 0), committed=3, timeout_s=300, clock=lambda: clock[0],
                exists=exists)  # fmt: skip
    assert set(asked) == {"cl"}
    assert by_s - 2 <= clock[0] <= by_s + 2
    if fails_with is StateError:
        message = str(err.value)
        assert "cl[0] | the state changelog topic 'cl' does not exist" in message
        assert "Note: restarting the pipeline creates it again, empty" in message


# -- the changelog writer holds the batch until its entries are acknowledged ------------------
class RecordingSink:
    """Keeps what is sent; acknowledges when told. Checks the writer's arguments."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], list[Any], int | None]] = []
        self.callbacks: list[Any] = []

    def send_many(self, out: Outgoing, only_if: Any = None) -> bool:
        assert len(out.values) == len(out.keys) and callable(out.on_delivery)
        if only_if is not None and not only_if():
            return False
        self.sent.append((out.topic, list(out.keys), list(out.values), out.partition))
        self.callbacks += [out.on_delivery] * len(out.values)
        return True


def test_no_commit_passes_a_batch_until_its_changelog_entries_are_acknowledged() -> None:
    tracker = OffsetTracker()
    span = tracker.add(("in", 1), [10, 11, 12])
    sink = RecordingSink()
    failures: list[BaseException] = []
    writer = ChangelogWriter(sink, "g.s.state", tracker, failures.append)  # type: ignore[arg-type]
    window = Window()
    assert writer.hold(window, span)
    assert writer.write(window, 1, [b"a", b"b"], [entry(10), entry(12)])
    assert sink.sent[0][0] == "g.s.state" and sink.sent[0][3] == 1
    tracker.resolve_all(span)  # the decisions are acknowledged first
    assert tracker.positions() == {}
    sink.callbacks[0](None, None)
    assert tracker.positions() == {}
    sink.callbacks[1](None, None)
    assert tracker.positions() == {("in", 1): 13} and not failures


def test_a_changelog_entry_that_fails_stops_the_stream_and_commits_nothing() -> None:
    tracker = OffsetTracker()
    span = tracker.add(("in", 0), [5])
    sink = RecordingSink()
    failures: list[BaseException] = []
    writer = ChangelogWriter(sink, "cl", tracker, failures.append)  # type: ignore[arg-type]
    window = Window()
    writer.hold(window, span)
    writer.write(window, 0, [b"a"], [entry(5)])
    tracker.resolve_all(span)
    sink.callbacks[0]("broker said no", None)
    assert tracker.positions() == {}
    (err,) = failures
    assert isinstance(err, StateError) and "cl[0] | state changelog entry not written" in str(err)


def test_an_abandoned_batch_sends_no_entries() -> None:
    tracker = OffsetTracker()
    span = tracker.add(("in", 0), [5])
    tracker.remove([("in", 0)])
    sink = RecordingSink()
    writer = ChangelogWriter(sink, "cl", tracker, print)  # type: ignore[arg-type]
    window = Window()
    assert not writer.hold(window, span)
    assert writer.write(window, 0, [b"a"], [entry(5)]) and sink.sent == []


def test_changelog_topic_name_and_settings() -> None:
    assert changelog_topic("fraud-group", "payments") == "fraud-group.payments.state"
    conf = changelog_config(3600)
    assert conf["cleanup.policy"] == "compact" and conf["min.compaction.lag.ms"] == "3600000"


def test_the_sweep_spares_a_key_whose_stored_entry_is_old_but_whose_cached_value_is_live(
    store: LocalStore,
) -> None:
    """Write-behind: the store may hold an expired entry of a key the cache has updated
    since; sweeping it would delete and tombstone a live key."""
    v = view(store, ttl_ms=1000, cache_keys=2)
    for i, key in enumerate("abc"):  # "a" leaves the cache: the store gets it, seen at 0
        v.put(key, Count(1, 0))
        v.updated([key], [i])
        v.flush(i + 1)
    assert unpack_entry(store.get(b"a"), "t")[1] == 0  # type: ignore[arg-type]
    (a,) = v.get_many(["a"], now_ms=[500])  # read back into the cache, still live
    assert a == Count(1, 0)
    v.put("a", Count(2, 5000))  # updated at 5000: stream time moves on; "b" leaves the cache
    v.updated(["a"], [3])
    v.flush(4)
    assert unpack_entry(store.get(b"a"), "t")[1] == 0  # the store still has the old entry
    assert v.sweep(100) == [b"b"]  # "b" expired (seen 0, stream time 5000); "a" is live
    assert store.get(b"a") is not None and store.get(b"b") is None
    assert v.get_many(["a"], now_ms=[5500]) == [Count(2, 5000)]
    v.close(changelog_end=None)
    with LocalStore(store.path) as again:
        assert unpack_entry(again.get(b"a"), "t") == (3, 5000, b"2,5000")  # type: ignore[arg-type]
