"""streamfer.pipeline.health: liveness from heartbeats, readiness, and the HTTP endpoints."""

from __future__ import annotations

import gzip
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamfer.errors import ConfigError, StreamferError
from streamfer.pipeline.health import HealthServer, HealthState
from streamfer.pipeline.metrics import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> HealthState:
    return HealthState(clock=clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process_collectors=False, nvml_loader=lambda: None)


@pytest.fixture
def server(metrics: Metrics, state: HealthState) -> Iterator[HealthServer]:
    with HealthServer(metrics, state, port=0) as srv:
        yield srv


def test_stale_heartbeat_fails_liveness_naming_it(state: HealthState, clock: FakeClock) -> None:
    batcher = state.heartbeat("batcher:fraud", max_age_s=5)
    state.heartbeat("consumer", max_age_s=60)
    assert state.liveness().ok
    clock.advance(6)
    check = state.liveness()
    assert not check.ok
    assert check.problems == ("heartbeat 'batcher:fraud' is 6.0 s old (limit 5 s)",)
    batcher.beat()
    assert state.liveness().ok
    clock.advance(6)
    batcher.close()  # stopped on purpose: no longer watched
    assert state.liveness().ok


def test_heartbeat_limit_must_be_positive(state: HealthState) -> None:
    with pytest.raises(ConfigError, match="max_age_s=0"):
        state.heartbeat("x", max_age_s=0)


def test_readiness_needs_every_condition_and_ends_when_draining(state: HealthState) -> None:
    assert state.readiness().problems == ("engines not ready", "partitions not ready")
    state.set_ready("engines")
    assert state.readiness().problems == ("partitions not ready",)
    state.set_ready("partitions")
    assert state.is_ready()
    state.set_ready("partitions", False)  # all partitions revoked
    assert not state.is_ready()
    state.set_ready("partitions")
    state.start_draining()
    assert state.readiness().problems == ("draining",)
    state.set_ready("engines")
    assert not state.is_ready()


def test_watched_conditions_are_read_at_every_check(state: HealthState) -> None:
    assigned: list[int] = []
    state.set_ready("engines")
    state.watch("partitions", lambda: bool(assigned))
    assert state.readiness().problems == ("partitions not ready",)
    assigned.append(3)
    assert state.is_ready()
    assigned.clear()  # all revoked in a rebalance
    assert not state.is_ready()
    state.set_ready("partitions")  # a pushed value replaces the watch
    assert state.is_ready()


def test_constructor_does_no_io() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        srv = HealthServer(Metrics(enabled=False), HealthState(), port=port)  # binds nothing
        with pytest.raises(StreamferError, match="not started"):
            _ = srv.port
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            srv.start()


def test_port_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="port 70000"):
        HealthServer(Metrics(enabled=False), HealthState(), port=70000)


def test_metrics_endpoint_serves_prometheus_text(server: HealthServer, metrics: Metrics) -> None:
    metrics.stream("camera", model="camera", engine="onnxruntime").dropped("stale", 4)
    code, headers, body = get(server.url + "/metrics")
    assert code == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (sample,) = families["streamfer_records_dropped"].samples
    assert sample.value == 4 and sample.labels["reason"] == "stale"


def test_metrics_endpoint_negotiates_openmetrics_and_gzip(server: HealthServer) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    code, headers, body = get(server.url + "/metrics", {"Accept": accept,
                                                        "Accept-Encoding": "gzip"})  # fmt: skip
    assert code == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).endswith(b"# EOF\n")


def test_healthz_and_readyz_over_http(
    server: HealthServer, state: HealthState, clock: FakeClock
) -> None:
    state.heartbeat("engine-worker", max_age_s=10)
    code, headers, body = get(server.url + "/healthz")
    assert (code, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body) == {"status": "ok", "problems": []}
    clock.advance(11)
    code, _, body = get(server.url + "/healthz")
    assert code == 503
    assert "engine-worker" in json.loads(body)["problems"][0]

    code, _, body = get(server.url + "/readyz")
    assert code == 503 and json.loads(body)["problems"] == ["engines not ready",
                                                            "partitions not ready"]  # fmt: skip
    state.set_ready("engines")
    state.set_ready("partitions")
    assert get(server.url + "/readyz")[0] == 200
    state.start_draining()
    assert get(server.url + "/readyz")[0] == 503


def test_ready_gauge_on_metrics_follows_readyz(server: HealthServer, state: HealthState) -> None:
    def ready_value() -> float:
        text = get(server.url + "/metrics")[2].decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return families["streamfer_ready"].samples[0].value

    assert ready_value() == 0
    state.set_ready("engines")
    state.set_ready("partitions")
    assert ready_value() == 1
    state.start_draining()
    assert ready_value() == 0


def test_unknown_path_and_head(server: HealthServer) -> None:
    assert get(server.url + "/nope")[0] == 404
    req = urllib.request.Request(server.url + "/metrics", method="HEAD")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) > 0
        assert resp.read() == b""


def test_close_frees_the_port_and_is_idempotent() -> None:
    srv = HealthServer(Metrics(enabled=False), HealthState(), port=0)
    srv.start()
    port = srv.port
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    srv.close()
    srv.close()
    again = HealthServer(Metrics(enabled=False), HealthState(), port=port)
    with again:
        assert again.port == port
        assert get(again.url + "/metrics")[0] == 200  # metrics off: empty but served


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def test_the_server_listens_only_on_the_host_it_was_given() -> None:
    # 127.0.0.2 is loopback too (all of 127/8 on Linux), but not the address 127.0.0.1
    with HealthServer(Metrics(enabled=False), HealthState(), host="0.0.0.0", port=0) as everywhere:
        assert _accepts("127.0.0.2", everywhere.port)  # the other address is reachable at all
    with HealthServer(Metrics(enabled=False), HealthState(), host="127.0.0.1", port=0) as local:
        assert local.url == f"http://127.0.0.1:{local.port}"
        assert get(local.url + "/healthz")[0] == 200
        assert not _accepts("127.0.0.2", local.port)


def test_an_address_it_cannot_bind_is_a_config_error() -> None:
    srv = HealthServer(Metrics(enabled=False), HealthState(), host="192.0.2.1", port=0)
    with pytest.raises(ConfigError, match=r"health \| cannot listen on 192\.0\.2\.1:0"):
        srv.start()
