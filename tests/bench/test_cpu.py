"""The bench's CPU meter: the listening broker found by port, CPU split per party."""

from __future__ import annotations

import math
import os
import socket
import sys
import time

import pytest

from streamfer.bench.cpu import CpuMeter, CpuReading, listening_pid, machine_busy_seconds

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


def test_the_process_listening_on_a_port_is_found_and_a_closed_port_has_none() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert listening_pid(port) is None  # bound, not listening
        s.listen()
        assert listening_pid(port) == os.getpid()
        assert CpuMeter(f"127.0.0.1:{port}").broker_pid == os.getpid()
        assert CpuMeter(f"kafka.example:{port}").broker_pid is None  # not local: not looked up
    assert listening_pid(port) is None


def test_per_record_split_and_the_rest_of_the_machine() -> None:
    before = CpuReading(at=10.0, machine_s=100.0, pipeline_s=5.0, broker_s=7.0, bench_s=1.0)
    after = CpuReading(at=12.0, machine_s=103.0, pipeline_s=6.0, broker_s=7.5, bench_s=1.25)
    got = after.per_record_us(before, 1000, generator_s=0.5)  # the generator's own report
    assert got == pytest.approx({
        "pipeline": 1000.0, "broker": 500.0, "generator and read-back": 750.0,
        "rest of the machine": 750.0, "busy_cores": 1.5,
    })  # fmt: skip
    no_broker = CpuReading(12.0, 103.0, 6.0, math.nan, 1.25).per_record_us(
        CpuReading(10.0, 100.0, 5.0, math.nan, 1.0), 1000
    )
    assert math.isnan(no_broker["broker"])
    assert no_broker["rest of the machine"] == pytest.approx(1750.0)  # the broker's share in it


def test_the_machine_and_this_process_count_a_busy_loop() -> None:
    meter = CpuMeter("127.0.0.1:1")
    start, t0 = meter.read(None), time.thread_time()
    deadline = time.monotonic() + 10
    while time.thread_time() - t0 < 0.3 and time.monotonic() < deadline:
        pass
    end = meter.read(None)
    assert end.bench_s - start.bench_s >= 0.25  # 10 ms clock ticks
    assert end.machine_s - start.machine_s >= 0.25
    assert machine_busy_seconds() >= end.machine_s
