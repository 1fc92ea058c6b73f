"""Threads named in the OS, and the bench's CPU per thread that reads those names."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamfer.bench.pipeline_proc import thread_cpu
from streamfer.threadnames import OS_NAME_BYTES, name_this_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="thread names via /proc")


def _os_name(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def test_a_thread_takes_its_python_name_in_the_os_cut_to_15_bytes() -> None:
    seen: dict[str, str] = {}

    def run() -> None:
        name_this_thread()
        seen["default"] = _os_name(threading.get_native_id())
        name_this_thread("engine-x")
        seen["given"] = _os_name(threading.get_native_id())

    t = threading.Thread(target=run, name="consume-payments-eu")
    t.start()
    t.join()
    assert seen == {"default": "consume-payments-eu"[:OS_NAME_BYTES], "given": "engine-x"}


def test_thread_cpu_sums_by_os_name_and_counts_librdkafka_as_one() -> None:
    done, release = threading.Event(), threading.Event()

    def spin() -> None:
        name_this_thread("spinner-test")
        deadline = time.monotonic() + 10
        while time.thread_time() < 0.2 and time.monotonic() < deadline:
            pass
        done.set()
        release.wait(15)  # alive while its CPU is read

    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "client.id": "t"})  # its threads
    try:
        t = threading.Thread(target=spin)
        t.start()
        assert done.wait(15), "the spinner used 0.2 s of CPU"
        cpu = thread_cpu(os.getpid())
    finally:
        release.set()
        producer.flush(0)
    t.join()
    assert cpu["spinner-test"] >= 0.15  # clock ticks: 10 ms each
    assert "librdkafka" in cpu and not any(k.startswith("rdk:") for k in cpu)
    assert thread_cpu(2**22 + 12345) == {}  # no such process
