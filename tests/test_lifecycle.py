"""``with x:`` starts ``x`` and stops it on the way out, through the methods its class names."""

from __future__ import annotations

import pytest

from streamfer.lifecycle import Lifecycle


class Server(Lifecycle, start="open", stop="close"):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def open(self) -> None:
        self.calls.append("open")

    def close(self) -> None:
        self.calls.append("close")


class Draining(Lifecycle, start="begin", stop="end", clean_flag="drain"):
    def __init__(self) -> None:
        self.drained: list[bool] = []

    def begin(self) -> None:
        pass

    def end(self, drain: bool = True) -> None:
        self.drained.append(drain)


def test_the_named_methods_run_and_the_block_gets_the_object() -> None:
    server = Server()
    with server as got:
        assert got is server and server.calls == ["open"]
    assert server.calls == ["open", "close"]


def test_stop_runs_when_the_block_raises_and_the_error_goes_on() -> None:
    server = Server()
    with pytest.raises(KeyError), server:
        raise KeyError("boom")
    assert server.calls == ["open", "close"]


def test_the_clean_flag_says_whether_the_block_ended_without_an_error() -> None:
    pipeline = Draining()
    with pipeline:
        pass
    with pytest.raises(RuntimeError), pipeline:
        raise RuntimeError("fatal")
    assert pipeline.drained == [True, False]


def test_subclasses_keep_the_names_and_their_overrides_run() -> None:
    class Child(Server):
        def close(self) -> None:
            self.calls.append("child close")

    child = Child()
    with child:
        pass
    assert child.calls == ["open", "child close"]


def test_no_start_method_and_a_misnamed_one() -> None:
    class Batch(Lifecycle, start=None, stop="release"):
        released = 0

        def release(self) -> None:
            self.released += 1

    with Batch() as batch:
        assert batch.released == 0
    assert batch.released == 1
    with pytest.raises(TypeError, match=r"Lifecycle method 'shutdown' is not defined"):

        class Broken(Lifecycle, start=None, stop="shutdown"):
            pass
