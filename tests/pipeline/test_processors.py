"""Processor plug-ins without Kafka: the contract check, isolation, the per-record base,
loading by name or entry point, configuration, and built-in kinds with plug-in parts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from plugin_kit import Faulty, JsonSum
from tiny_models import DETECTION_LABELS, sensor_model, sum_model, yolo_model

from streamfer.engines.base import Runner, TensorSpec
from streamfer.engines.select import create_runner
from streamfer.errors import CodecError, ConfigError, EngineError, ProcessorError
from streamfer.pipeline.config import StreamConfig, load_config
from streamfer.pipeline.isolation import prepare_isolated
from streamfer.pipeline.processors import (
    Output,
    Prepared,
    ProcessorContext,
    Reject,
    make_processor,
    plugins,
    processor_context,
)
from streamfer.pipeline.processors.checks import PreparedCheck
from streamfer.streams.codecs import CodecLimits, encode_camera
from streamfer.streams.records import Record, RecordBatch

X = TensorSpec("x", np.dtype(np.float32), (None, 3))


def batch(values: list[bytes | None], topic: str = "in") -> RecordBatch:
    n = len(values)
    return RecordBatch(topic, 0, list(range(100, 100 + n)), [b"k%d" % i for i in range(n)],
                       values, [None] * n, [1_700_000_000_000] * n, 0)  # fmt: skip


def context(config: Any = None, limits: CodecLimits | None = None) -> ProcessorContext:
    return ProcessorContext(
        stream="s", kind="custom", model="sum", config=config if config is not None else {},
        inputs=(X,), outputs=(TensorSpec("y", np.dtype(np.float32), (None, 1)),),
        metadata={}, max_batch=32, limits=limits or CodecLimits(),
    )  # fmt: skip


def rows(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.intp)


# -- the contract check -------------------------------------------------------------------
def test_a_prepared_that_keeps_the_contract_passes() -> None:
    b = batch([b"a", b"b", b"c"])
    err = CodecError("in[0]@101 | no", "bad_json")
    ok = Prepared(b, np.array([0, 2]), {"x": np.zeros((2, 3), np.float32)}, ["m0", "m2"],
                  rejects=[Reject(1, "bad_json", err)])  # fmt: skip
    PreparedCheck("P", [X])(b, ok)
    PreparedCheck("P", [X])(b, Prepared(b, rows(0), {}, rejects=[Reject(i, "x", err)
                                                                  for i in range(3)]))  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: Prepared(b, np.array([0, 1]), {"x": np.zeros((2, 3), np.float32)}),
         "accepted 2, rejected 0 (rows []), absorbed 0 and dropped 0 of 3 records"),
        (lambda b: Prepared(b, np.array([0, 0, 1]), {"x": np.zeros((3, 3), np.float32)}),
         "returned rows [0, 0, 1] for 3 records"),
        (lambda b: Prepared(b, np.array([0, 1, 3]), {"x": np.zeros((3, 3), np.float32)}),
         "returned rows [0, 1, 3] for 3 records"),
        (lambda b: Prepared(b, rows(3), {"x": np.zeros((3, 3), np.float64)}),
         "returned feed 'x' float64 [3, 3] for 3 accepted records. Note: expected float32 [N, 3]"),
        (lambda b: Prepared(b, rows(3), {"x": np.zeros((3, 4), np.float32)}),
         "returned feed 'x' float32 [3, 4]"),
        (lambda b: Prepared(b, rows(3), {"x": np.zeros((2, 3), np.float32)}),
         "returned feed 'x' float32 [2, 3] for 3 accepted records"),
        (lambda b: Prepared(b, rows(3), {"features": np.zeros((3, 3), np.float32)}),
         "returned feeds ['features']. Note: expected the model's inputs ['x']"),
        (lambda b: Prepared(b, rows(3), {"x": np.zeros((3, 3), np.float32)}, [1]),
         "returned 1 metas for 3 accepted records"),
        (lambda b: Prepared(batch([b"a", b"b", b"c"]), rows(3), {"x": np.zeros((3, 3))}),
         "returned a Prepared of another batch"),
        (lambda b: {"x": np.zeros((3, 3))}, "returned a dict. Note: expected a Prepared"),
        (lambda b: Prepared(b, rows(2), {"x": np.zeros((2, 3), np.float32)},
                            dropped={"boring": np.array([2])}),
         "dropped records with reason 'boring'. Note: expected a drop reason of"),
    ],
)  # fmt: skip
def test_a_prepared_that_breaks_the_contract_is_named(make: Any, message: str) -> None:
    b = batch([b"a", b"b", b"c"])
    with pytest.raises(ProcessorError) as info:
        PreparedCheck("P", [X])(b, make(b))
    assert str(info.value).startswith("P.prepare | ") and message in str(info.value)
    assert info.value.reason == "processor_error"


def test_feeds_of_a_processor_that_runs_the_model_itself_are_checked_for_rows_only() -> None:
    """The GPU camera path's feeds are encoded frames (objects), handed to its infer_with."""
    b = batch([b"a", b"b"])
    frames = np.empty(2, dtype=object)
    frames[:] = [b"jpeg-0", b"jpeg-1"]
    PreparedCheck("Gpu", None)(b, Prepared(b, rows(2), {"__frames__": frames}))
    with pytest.raises(ProcessorError, match="returned feed '__frames__' object \\[1\\]"):
        PreparedCheck("Gpu", None)(b, Prepared(b, rows(2), {"__frames__": frames[:1]}))


# -- isolation ----------------------------------------------------------------------------
def test_a_record_that_makes_prepare_raise_is_isolated_and_the_rest_prepared() -> None:
    b = batch([b"ok-1", b"ok-2", b"raise-3", b"ok-4"])
    (got,) = prepare_isolated(Faulty(context()), b, "processor_error", PreparedCheck("Faulty", [X]))
    assert got.rows.tolist() == [0, 1, 3]
    assert got.feeds["x"][:, 0].tolist() == [1.0, 2.0, 4.0]
    assert list(got.metas or []) == [b"ok", b"ok", b"ok"]
    (rej,) = got.rejects
    assert (rej.row, rej.reason) == (2, "processor_error")
    assert isinstance(rej.error, ProcessorError) and rej.error.error_class == "RuntimeError"
    assert str(rej.error).startswith("in[0]@102 | Faulty.prepare raised RuntimeError: cannot")


def test_a_prepared_breaking_the_contract_for_one_record_isolates_that_record() -> None:
    class Forgetful(Faulty):
        """Forgets (neither accepts nor rejects) records whose value is b"lost-<n>"."""

        def prepare(self, batch: RecordBatch) -> Prepared:
            p = super().prepare(batch)
            keep = [i for i, v in enumerate(batch.values) if not (v or b"").startswith(b"lost")]
            return Prepared(batch, np.asarray(keep, np.intp), {"x": p.feeds["x"][keep]})

    b = batch([b"ok-1", b"lost-2", b"ok-3"])
    (got,) = prepare_isolated(Forgetful(context()), b, "processor_error",
                              PreparedCheck("Forgetful", [X]))  # fmt: skip
    assert got.rows.tolist() == [0, 2]
    (rej,) = got.rejects
    assert rej.row == 1 and rej.error.error_class == "ProcessorError"  # type: ignore[attr-defined]
    assert "accepted 0, rejected 0" in str(rej.error)


def test_records_isolated_from_a_failed_batch_stay_apart_where_their_feeds_do_not_stack() -> None:
    class Padding:
        """Text as byte codes padded to the longest value of the batch (a dynamic axis)."""

        def prepare(self, batch: RecordBatch) -> Prepared:
            values = [v or b"" for v in batch.values]
            if b"bad" in values:
                raise ValueError("bad text")
            width = max(len(v) for v in values)
            x = np.array([list(v.ljust(width)) for v in values], dtype=np.float32)
            return Prepared(batch, rows(len(batch)), {"text": x}, values)

        def results(self, outputs: Any, metas: Any) -> list[Any]:
            return []

    text = TensorSpec("text", np.dtype(np.float32), (None, None))
    b = batch([b"ab", b"bad", b"abcd"])
    first, second = prepare_isolated(Padding(), b, "processor_error",
                                     PreparedCheck("Padding", [text]))  # fmt: skip
    assert [(p.rows.tolist(), p.feeds["text"].shape, list(p.metas or [])) for p in
            (first, second)] == [([0], (1, 2), [b"ab"]), ([2], (1, 4), [b"abcd"])]  # fmt: skip
    assert [(r.row, r.reason) for r in first.rejects] == [(1, "processor_error")]
    assert second.rejects == []


# -- the per-record base --------------------------------------------------------------------
def test_record_processor_rejects_with_reasons_and_isolates_its_own_bugs() -> None:
    proc = JsonSum(context(JsonSum.config_model(), CodecLimits(max_message_bytes=64)))
    b = batch([
        b'{"values": [1, 2, 3]}',
        None,
        b"",
        b'{"values": [1, 2, 3], "pad": "' + b"x" * 64 + b'"}',
        b"not json",
        b'{"values": [1]}',
        b'{"values": [1, 2, 3], "explode": "decode"}',
        b'{"values": [4, 5, 6], "explode": "result"}',
    ])  # fmt: skip
    p = proc.prepare(b)
    PreparedCheck("JsonSum", [X])(b, p)
    assert p.rows.tolist() == [0, 7]
    assert p.feeds["x"].dtype == np.float32 and p.feeds["x"].tolist() == [[1, 2, 3], [4, 5, 6]]
    reasons = {r.row: r.reason for r in p.rejects}
    assert reasons == {1: "null_value", 2: "empty", 3: "too_large", 4: "processor_error",
                       5: "missing_field", 6: "processor_error"}  # fmt: skip
    errors = {r.row: r.error for r in p.rejects}
    assert errors[4].error_class == "JSONDecodeError"  # type: ignore[attr-defined]
    assert str(errors[6]) == "in[0]@106 | JsonSum.decode raised KeyError: 'explode'"
    outputs = {"y": np.array([[6.0], [15.0]], np.float32)}
    ok, bad = proc.results(outputs, p.metas or [])
    assert ok == {"sum": 6.0}
    assert isinstance(bad, ProcessorError) and bad.error_class == "ZeroDivisionError"
    assert str(bad) == "JsonSum.result raised ZeroDivisionError: division by zero"


def test_record_processor_results_carry_the_output_key_and_headers() -> None:
    proc = JsonSum(context(JsonSum.config_model(scale=2.0, alert_above=10.0)))
    items = [{"values": [1, 1, 1]}, {"values": [5, 5, 5]}]
    low, high = proc.results({"y": np.array([[3.0], [15.0]], np.float32)}, items)
    assert low == {"sum": 6.0}
    assert high == Output({"sum": 30.0}, key=b"alerts", headers=[("alert", b"yes")])


# -- loading and configuration ------------------------------------------------------------
@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package installed the way pip leaves one (a dist-info with an entry point)."""
    (tmp_path / "kit_dist-1.0.dist-info").mkdir()
    (tmp_path / "kit_dist-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: kit-dist\nVersion: 1.0\n"
    )
    (tmp_path / "kit_dist-1.0.dist-info" / "entry_points.txt").write_text(
        f"[{plugins.ENTRY_POINT_GROUP}]\njson-sum = plugin_kit:JsonSum\n"
        "broken = no_such_module_anywhere:Thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "json-sum"


def test_plugins_load_by_module_path_or_entry_point_name(installed_plugin: str) -> None:
    assert plugins.load("plugin_kit:JsonSum") is JsonSum
    assert plugins.load(installed_plugin) is JsonSum
    assert {"json-sum", "broken"} <= set(plugins.installed())


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_module_anywhere:X",
         "processor 'no_such_module_anywhere:X' | cannot import 'no_such_module_anywhere' "
         "(ModuleNotFoundError: No module named 'no_such_module_anywhere')"),
        ("plugin_kit:Nope", "module 'plugin_kit' has no 'Nope'"),
        ("plugin_kit:NOT_CALLABLE", "names a int. Note: expected a class"),
        ("not-installed", "no installed plug-in of that name. Note: expected package.module:Name"),
        ("broken", "entry point 'no_such_module_anywhere:Thing' failed to load"),
    ],
)  # fmt: skip
def test_a_plugin_that_cannot_load_says_why(installed_plugin: str, ref: str, message: str) -> None:
    with pytest.raises(plugins.PluginError) as info:
        plugins.load(ref)
    assert message in str(info.value)
    if ref == "not-installed":
        assert "json-sum" in info.value.allowed


def write(tmp_path: Path, *streams: dict[str, Any]) -> Path:
    sum_model(tmp_path / "sum.onnx")
    sensor_model(tmp_path / "sensor.onnx")
    doc = {
        "models": {"sum": {"path": "sum.onnx"}, "sensor": {"path": "sensor.onnx"}},
        "streams": [
            {"name": f"s{i}", "input_topic": f"in{i}", "output_topic": f"out{i}", "model": "sum",
             **s}
            for i, s in enumerate(streams)
        ],
    }  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_custom_streams_and_their_processor_config_are_validated_like_the_rest(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        {"kind": "custom"},
        {"kind": "custom", "processor": "plugin_kit:Nope"},
        {"kind": "custom", "processor": "plugin_kit:JsonSum",
         "processor_config": {"scale": -1, "colour": "red"}},
        {"kind": "custom", "processor": "plugin_kit:JsonSum",
         "processor_config": {"alert_above": -5}},
        {"kind": "sensor", "model": "sensor", "processor": "plugin_kit:JsonSum"},
        {"kind": "sensor", "model": "sensor", "processor_config": {"prefix": "c"}},
        {"kind": "custom", "processor": "plugin_kit:Faulty", "postprocessor": "plugin_kit:X"},
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    src = str(path)
    for line in [
        f"{src}: streams[0].processor | required with kind custom (got None). Note: allowed: "
        "package.module:Name",
        f"{src}: streams[1].processor | module 'plugin_kit' has no 'Nope' (got "
        "'plugin_kit:Nope')",
        f"{src}: streams[2].processor_config.scale | Input should be greater than 0 (got -1)",
        f"{src}: streams[2].processor_config.colour | unknown key (got 'colour'). Note: allowed: "
        "alert_above, scale",
        f"{src}: streams[3].processor_config.alert_above | sums are never negative (got -5.0). "
        "Note: allowed: >= 0",
        f"{src}: streams[4].processor | a whole processor replaces a built-in one only with "
        "kind custom (kind is sensor)",
        f"{src}: streams[5].processor_config | set without a processor or postprocessor",
        f"{src}: streams[6].postprocessor | applies to built-in kinds",
    ]:
        assert line in text, line
    assert text.startswith(f"{src} | 9 problems in the config")  # 6: processor and postprocessor


def runner_for(path: Path, max_batch: int = 8) -> Runner:
    runner = create_runner(path, target="onnxruntime", max_batch=max_batch)
    runner.activate()
    return runner


def test_a_custom_stream_builds_its_plugin_with_a_context(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"kind": "custom", "processor": "plugin_kit:JsonSum",
                                       "processor_config": {"scale": 2},
                                       "batching": {"max_batch": 4}}))  # fmt: skip
    runner = runner_for(tmp_path / "sum.onnx")
    try:
        proc = make_processor(cfg.streams[0], runner, threads=3)
        assert isinstance(proc, JsonSum)
        ctx = proc.context
        assert (ctx.stream, ctx.kind, ctx.model, ctx.max_batch, ctx.threads) == (
            "s0", "custom", "sum", 4, 3)  # fmt: skip
        assert ctx.config == JsonSum.config_model(scale=2.0)
        assert ctx.input == X and ctx.output.name == "y"
        assert ctx.metadata["streamfer.version"] == "tiny"
        assert ctx.limits.max_message_bytes == cfg.streams[0].limits.max_message_bytes
        b = batch([b'{"values": [1, 2, 3]}'])
        p = proc.prepare(b)
        assert proc.results(runner.infer(p.feeds), p.metas or []) == [{"sum": 12.0}]
    finally:
        runner.deactivate()


def test_a_plugin_that_fails_to_build_fails_the_start_with_its_error(tmp_path: Path) -> None:
    runner = runner_for(sum_model(tmp_path / "sum.onnx"))
    try:
        for name, message in [
            ("Picky", "building it for stream s failed \\(ValueError: needs a GPU\\)"),
            ("Lazy", "built a Lazy without prepare, results"),
        ]:
            stream = StreamConfig(name="s", kind="custom", input_topic="a", output_topic="b",
                                  model="sum", processor=f"plugin_kit:{name}")  # fmt: skip
            with pytest.raises(ConfigError, match=message):
                make_processor(stream, runner)
    finally:
        runner.deactivate()


def test_a_builtin_kind_takes_a_plugin_postprocessor(tmp_path: Path) -> None:
    stream = StreamConfig(name="imu", kind="sensor", input_topic="a", output_topic="b",
                          model="sensor", postprocessor="plugin_kit:SensorLabels",
                          processor_config={"prefix": "c"})  # fmt: skip
    runner = runner_for(sensor_model(tmp_path / "sensor.onnx"))
    try:
        proc = make_processor(stream, runner)
        assert processor_context(stream, runner).config == {"prefix": "c"}
        window = np.zeros((100, 6), np.float32)
        window[:, 2] = 5.0  # the tiny model's softmax of the channel means
        b = batch([json.dumps(window.tolist()).encode()])
        p = proc.prepare(b)
        assert len(p) == 1, p.rejects
        (result,) = proc.results(runner.infer(p.feeds), p.metas or [None])
        assert isinstance(result, dict) and result["class"].startswith("c")
    finally:
        runner.deactivate()


# -- detectors in the common YOLO layouts, through the built-in camera processor ------------
def camera_stream(**detection: Any) -> StreamConfig:
    return StreamConfig(name="cam", kind="camera", input_topic="a", output_topic="b",
                        model="yolo", detection=detection)  # fmt: skip


def frame_batch() -> RecordBatch:
    image = np.full((240, 320, 3), 90, np.uint8)
    value, headers = encode_camera(image, capture_ts_ns=1, frame_seq=7)
    record = Record("cams", 0, 5, b"cam-1", value, tuple(headers), 1_700_000_000_000, 0)
    return RecordBatch.of([record])


@pytest.mark.parametrize("configured", [None, ["a", "b", "c"]])
def test_a_yolov5_export_runs_through_the_camera_kind_with_its_own_labels(
    tmp_path: Path, configured: list[str] | None
) -> None:
    runner = runner_for(yolo_model(tmp_path / "yolo.onnx", ["person", "car", "dog"], size=320))
    try:
        stream = camera_stream(labels=configured) if configured else camera_stream()
        proc = make_processor(stream, runner, threads=1)
        b = frame_batch()
        p = proc.prepare(b)
        assert p.feeds["images"].shape == (1, 3, 320, 320)
        (out,) = proc.results(runner.infer(p.feeds), p.metas or [])
        assert isinstance(out, Output) and out.extra == {"frame": {
            "seq": 7, "capture_ts_ns": 1, "width": 320, "height": 240}}  # fmt: skip
        (det,) = out.result["detections"]
        assert det["label"] == ("car" if configured is None else "b")
        assert det["score"] == pytest.approx(0.72)
        # the middle of the input, mapped back to the 320x240 frame: (120, 100)-(200, 140)
        assert det["box"] == pytest.approx([120.0, 100.0, 200.0, 140.0], abs=0.5)
    finally:
        runner.deactivate()


def test_a_detector_whose_output_cannot_fit_the_labels_fails_at_start(tmp_path: Path) -> None:
    runner = runner_for(yolo_model(tmp_path / "yolo.onnx", DETECTION_LABELS, size=320))
    try:
        with pytest.raises(EngineError) as info:
            make_processor(camera_stream(labels=["a", "b", "c"]), runner)
        assert str(info.value) == (
            "yolo output 'output0' | float32 [N, 6, 9] does not fit 3 labels ['a', 'b', 'c']. "
            "Note: expected [N, 7, A] or [N, A, 7] (YOLOv8) or [N, A, 8] (YOLOv5); set "
            "detection.labels to the model's classes"
        )
    finally:
        runner.deactivate()


def test_state_on_a_custom_stream_needs_a_stateful_processor(tmp_path: Path) -> None:
    path = write(tmp_path, {"kind": "custom", "processor": "plugin_kit:JsonSum",
                            "state": {"enabled": True}})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines()[1:] == [
        f"  {path}: streams[0].state.enabled | processor plugin_kit:JsonSum keeps no per-key "
        "state (got True). Note: allowed: false, kind: custom with a StatefulProcessor "
        "(state_codec, prepare_with_state)",
    ]
    # a stateful one (the telemetry example's) is accepted: tests/pipeline/test_example_*


@pytest.mark.parametrize("n", [3, 40])  # checked without numpy, and with it
def test_rows_out_of_order_or_range_are_named_at_any_poll_size(n: int) -> None:
    b = batch([b"v"] * n)
    ok = np.arange(n)
    for bad in (ok[::-1].copy(), np.concatenate([ok[:-1], [n]]), np.concatenate([[-1], ok[1:]]),
                np.concatenate([ok[:2], ok[1:-1]])):  # fmt: skip
        with pytest.raises(ProcessorError, match=f"for {n} records. Note: expected increasing"):
            PreparedCheck("P", [X])(b, Prepared(b, bad, {"x": np.zeros((n, 3), np.float32)}))
    PreparedCheck("P", [X])(b, Prepared(b, ok, {"x": np.zeros((n, 3), np.float32)}))
