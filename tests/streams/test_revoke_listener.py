"""The revocation listener keeps the client's event loop (heartbeats) running (no broker)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from kafka.structs import TopicPartition as KTP

from streamfer.streams.client import ConsumerOptions, TopicPartition
from streamfer.streams.kafka_python.consumer import Listener
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.source import KafkaSource, SourceOptions, revoke_wait


class FakeLoop:
    """Stands in for kafka-python's event loop: every sleep is a turn (a heartbeat chance)."""

    def __init__(self) -> None:
        self.turns = 0
        self.turned = threading.Event()

    async def _turn(self) -> None:
        self.turns += 1
        if self.turns >= 3:
            self.turned.set()
        await asyncio.sleep(0.001)  # a turn of the loop, the thing under test: not a wait

    def sleep(self, delay: float) -> Any:
        return self._turn()


def test_the_revocation_hook_waits_off_the_event_loop() -> None:
    loop = FakeLoop()
    calls: list[tuple[list[TopicPartition], bool]] = []

    def hook(tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        calls.append((tps, lost))
        # a drain that lasts while the loop keeps turning (inline, it would never turn)
        assert loop.turned.wait(10), "the event loop did not run while the hook waited"
        return {}

    listener = Listener(hook, lambda tps: None)
    listener.consumer = SimpleNamespace(_net=loop)  # type: ignore[assignment]
    asyncio.run(listener.on_partitions_revoked([KTP("t", 0)]))
    assert calls == [([("t", 0)], False)]
    assert loop.turns >= 3


def test_hook_errors_reach_the_client_and_inline_hooks_still_run() -> None:
    def failing(tps: list[TopicPartition], lost: bool) -> Mapping[TopicPartition, int]:
        raise RuntimeError("hook failed")

    listener = Listener(failing, lambda tps: None)
    listener.consumer = SimpleNamespace(_net=FakeLoop())  # type: ignore[assignment]
    try:
        asyncio.run(listener.on_partitions_lost([KTP("t", 0)]))
    except RuntimeError as exc:
        assert "hook failed" in str(exc)
    else:
        raise AssertionError("the hook's error was swallowed")
    seen: list[bool] = []
    inline = Listener(lambda tps, lost: seen.append(lost) or {}, lambda tps: None)
    asyncio.run(inline.on_partitions_lost([KTP("t", 0)]))  # no loop to yield to
    assert seen == [True]


def test_revoke_wait_is_capped_at_half_the_session_without_heartbeats() -> None:
    options = SourceOptions(revoke_timeout_s=30.0)
    consumer = ConsumerOptions("g", session_timeout_ms=10_000)
    src = KafkaSource(KafkaSettings("127.0.0.1:1"), ["t"], consumer, options)
    assert src.revoke_wait_s == 5.0  # an inline hook would block heartbeats past the session
    assert revoke_wait(options, consumer, heartbeats=False) == 5.0
    assert revoke_wait(options, consumer, heartbeats=True) == 30.0
