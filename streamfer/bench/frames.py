"""Frame path: frames/s per core for the camera stream, and where the time goes.

Three measurements, interleaved and repeated:

* JPEG-decode limit: the codec's ``decode_camera`` alone on the same frames,
  as the pipeline calls it (reduced decode), one thread per core;
* engine limit: the camera model alone at the stream's ``max_batch``
  (``streamfer.bench.engine_curve``), ONNX Runtime threads as configured;
* camera path: ``streamfer run`` (mode ``replay``, so a backlog is not
  dropped as stale) draining preloaded frames, rate from output append times.

Once per run, a single-threaded instrumented loop does the camera path's work
in order (poll, decode, letterbox, inference with one intra-op thread,
postprocess, publish) with the same functions the pipeline calls, and splits
its time: that is frames/s per core and the share of each stage.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamfer.bench.engine_curve import measure_engine_curve
from streamfer.bench.kafka_io import (
    produce_all,
    read_n,
    reader,
    run_id,
    topic_set,
)
from streamfer.bench.machine import probe_machine
from streamfer.bench.passthrough import ClientTuning
from streamfer.bench.pipeline_proc import (
    CONFIG_DIR,
    bench_config,
    drain_rate,
    load_raw,
)
from streamfer.bench.records import PoolItem, camera_pool, stamped
from streamfer.bench.report import Report, Table, Target
from streamfer.bench.stats import Spread
from streamfer.pipeline.config import PipelineConfig
from streamfer.streams.records import Record

CAMERA_INPUT = 256  # the reference detector's input (streamfer.input_size in its metadata)

Say = Callable[[str], None]
STAGES = ("kafka I/O", "decode", "preprocess", "inference", "postprocess", "publish")
WORK_STAGES = ("preprocess", "infer", "postprocess")  # broker/queue/e2e only say "backlog" here


@dataclass(frozen=True)
class FramesOptions:
    frames: int = 1500
    repeats: int = 3
    split_frames: int = 300
    limit_seconds: float = 3.0
    config: Path = CONFIG_DIR / "camera.yaml"
    keep_topics: bool = False


@dataclass
class FramesResult:
    decode_fps: list[float] = field(default_factory=list)
    engine_fps: list[float] = field(default_factory=list)
    pipeline_fps: list[float] = field(default_factory=list)
    split_ns: dict[str, int] = field(default_factory=dict)
    split_frames: int = 0
    decision_stages_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_batch: int = 0
    threads: int = 0


def _record(msg: Any) -> Record:
    return Record(
        msg.topic, msg.partition, msg.offset, msg.key, msg.value, tuple(msg.headers or ()),
        msg.timestamp, time.monotonic_ns(),
    )  # fmt: skip


def decode_limit(items: list[PoolItem], cfg: PipelineConfig, threads: int, seconds: float
                 ) -> float:  # fmt: skip
    """Frames/s of ``decode_camera`` alone, ``threads`` threads, for ``seconds``: decoded
    as the pipeline decodes them (reduced to what the 256-pixel detector input needs)."""
    from streamfer.pipeline.processors.camera import CameraProcessor
    from streamfer.streams.codecs import decode_camera

    pre = CameraProcessor(cfg.streams[0], [], CAMERA_INPUT, threads=1)
    limits, fit = pre.limits, pre.fit
    recs = [Record("bench", 0, i, k, v, tuple(h), 0, 0) for i, (k, v, h) in enumerate(items)]
    stop_at = time.perf_counter() + seconds

    def work(start: int) -> int:
        n = 0
        while time.perf_counter() < stop_at:
            decode_camera(recs[(start + n) % len(recs)], limits, fit=fit)
            n += 1
        return n

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(work, range(0, threads * 7, 7)))
    return total / (time.perf_counter() - t0)


def engine_limit(cfg: PipelineConfig, seconds: float) -> float:
    stream = cfg.streams[0]
    model = cfg.models[stream.model]
    curve = measure_engine_curve(
        [model.path.stem], [stream.batching.max_batch], seconds,
        intra_op_threads=model.intra_op_threads, models_dir=model.path.parent,
    )  # fmt: skip
    return curve.points[0].samples_per_s


def pipeline_rate(
    bootstrap: str, base: dict[str, Any], cfg_path: Path, in_topic: str, out: str, group: str,
    n: int,
) -> float:  # fmt: skip
    raw, _ = bench_config(
        base, source=str(cfg_path), kind="camera", bootstrap=bootstrap, input_topic=in_topic,
        output_topic=out, group=group,
        overrides={"mode": "replay", "drop_stale": False, "latest_per_key": False},
    )  # fmt: skip
    return drain_rate(raw, bootstrap, out, n, "camera pipeline", 300, lambda text: None)


def stage_split(bootstrap: str, in_topic: str, cfg: PipelineConfig, n: int, group: str
                ) -> dict[str, int]:  # fmt: skip
    """The camera path's work on one thread, timed per stage (ns in total over ``n`` frames)."""
    from streamfer.engines.select import create_runner
    from streamfer.pipeline.decisions import DecisionEncoder, ModelIdentity, SegmentTiming
    from streamfer.pipeline.postprocess import DetectionPostprocessor, labels_from_metadata
    from streamfer.pipeline.processors.camera import CameraProcessor, camera_input
    from streamfer.streams.codecs import decode_camera

    stream = cfg.streams[0]
    mcfg = cfg.models[stream.model]
    tuning = ClientTuning.from_config(cfg)
    t = dict.fromkeys(STAGES, 0)
    runner = create_runner(mcfg.path, target=mcfg.target, max_batch=mcfg.max_batch,
                           intra_op_threads=1)  # fmt: skip
    consumer = reader(bootstrap, in_topic, max_poll_records=tuning.max_poll_records,
                      fetch_max_wait_ms=tuning.fetch_max_wait_ms,
                      max_partition_fetch_bytes=tuning.max_partition_fetch_bytes)  # fmt: skip
    producer = tuning.producer(bootstrap)
    with runner:
        size = int(runner.metadata.get("streamfer.input_size", "256"))
        labels = labels_from_metadata(runner.metadata, runner.name)
        output_name = runner.output_specs[0].name
        pre = CameraProcessor(stream, labels, size, threads=1, output_name=output_name)
        limits, post = pre.limits, DetectionPostprocessor(stream.detection, labels, output_name)
        encoder = DecisionEncoder(stream.name, "camera", ModelIdentity.of(stream.model, runner))
        zero = SegmentTiming(0.0, 0.0, 0.0, 0.0)
        name = runner.input_specs[0].name
        pending: list[tuple[Record, np.ndarray, Any]] = []

        def flush_batch() -> None:
            a = time.perf_counter_ns()
            batch = np.stack([p[1] for p in pending])
            b = time.perf_counter_ns()
            out = runner.infer({name: batch})
            c = time.perf_counter_ns()
            results = post.results(out, [p[2] for p in pending])
            d = time.perf_counter_ns()
            for (rec, _, _), res in zip(pending, results, strict=True):
                doc = encoder.encode(rec, res, batch_size=len(pending), broker_ms=0.0, timing=zero)
                producer.send(stream.output_topic, key=rec.key, value=doc)
            e = time.perf_counter_ns()
            t["preprocess"] += b - a
            t["inference"] += c - b
            t["postprocess"] += d - c
            t["publish"] += e - d
            pending.clear()

        done, first = 0, True
        try:
            while done < n:
                a = time.perf_counter_ns()
                polled = consumer.poll(timeout_ms=200, max_records=n - done)
                first = first and not polled
                if not first:  # empty polls before the first data are connection set-up
                    t["kafka I/O"] += time.perf_counter_ns() - a
                for msgs in polled.values():
                    for msg in msgs:
                        rec = _record(msg)
                        a = time.perf_counter_ns()
                        frame = decode_camera(rec, limits, fit=pre.fit)
                        b = time.perf_counter_ns()
                        tensor, meta = camera_input(frame, size)
                        t["decode"] += b - a
                        t["preprocess"] += time.perf_counter_ns() - b
                        pending.append((rec, tensor, meta))
                        done += 1
                        if len(pending) >= stream.batching.max_batch:
                            flush_batch()
            if pending:
                flush_batch()
            a = time.perf_counter_ns()
            producer.flush()
            t["kafka I/O"] += time.perf_counter_ns() - a
        finally:
            producer.close(timeout=10)
            consumer.close()
    return t


def _decision_stages(bootstrap: str, topic: str, n: int) -> dict[str, tuple[float, float]]:
    import json

    rows = [json.loads(r.value)["latency_ms"] for r in read_n(bootstrap, topic, n, 60)]
    out = {}
    for stage in WORK_STAGES:
        vals = np.array([r[stage] for r in rows if r.get(stage) is not None], dtype=float)
        if vals.size:
            out[stage] = (float(vals.mean()), float(np.percentile(vals, 99)))
    return out


def run_frames(bootstrap: str, opts: FramesOptions, command: str, say: Say) -> Report:
    from streamfer.pipeline.config import parse_config

    base = load_raw(opts.config)
    cfg = parse_config(base, str(opts.config))
    machine = probe_machine()
    threads = os.cpu_count() or 1
    res = FramesResult(max_batch=cfg.streams[0].batching.max_batch, threads=threads)
    rid = run_id()
    with topic_set(bootstrap, keep=opts.keep_topics) as topics:
        say(f"rendering and loading {opts.frames:,} frames")
        pool = camera_pool(min(opts.frames, 64))
        items = stamped(pool, opts.frames)
        in_topic = topics.input(f"bench-{rid}-frames")
        topics.track(f"{in_topic}.dlq")
        produce_all(bootstrap, in_topic, items)
        for rep in range(opts.repeats):
            res.decode_fps.append(decode_limit(pool, cfg, threads, opts.limit_seconds))
            res.engine_fps.append(engine_limit(cfg, opts.limit_seconds))
            out = topics.output(f"bench-{rid}-frames-out-{rep}")
            res.pipeline_fps.append(pipeline_rate(
                bootstrap, base, opts.config, in_topic, out, f"bench-{rid}-p{rep}", opts.frames
            ))  # fmt: skip
            if rep == 0:
                res.decision_stages_ms = _decision_stages(bootstrap, out, opts.frames)
            say(f"rep {rep + 1}/{opts.repeats}: decode {res.decode_fps[-1]:,.0f}/s, engine "
                f"{res.engine_fps[-1]:,.0f}/s, pipeline {res.pipeline_fps[-1]:,.0f}/s")  # fmt: skip
        say(f"instrumented single-thread loop over {opts.split_frames} frames")
        split_out = topics.output(f"bench-{rid}-frames-split")
        cfg_split = parse_config(
            bench_config(base, source=str(opts.config), kind="camera", bootstrap=bootstrap,
                         input_topic=in_topic, output_topic=split_out, group="unused")[0],
            str(opts.config),
        )  # fmt: skip
        n = min(opts.split_frames, opts.frames)
        res.split_ns = stage_split(bootstrap, in_topic, cfg_split, n, f"bench-{rid}-split")
        res.split_frames = n
    return frames_report(res, opts, command, machine)


def frames_report(res: FramesResult, opts: FramesOptions, command: str, machine: Any) -> Report:
    total = sum(res.split_ns.values())
    per_core = res.split_frames / (total / 1e9) if total else float("nan")
    split = Table(
        f"Camera path on one thread (one core), {res.split_frames} frames 640x360 JPEG, "
        f"batch {res.max_batch}: {per_core:,.1f} frames/s per core",
        ("stage", "ms per frame", "share"),
        tuple(
            (s, f"{res.split_ns[s] / res.split_frames / 1e6:.2f}", f"{res.split_ns[s] / total:.0%}")
            for s in STAGES
        ),
    )
    lows = [min(d, e) for d, e in zip(res.decode_fps, res.engine_fps, strict=True)]
    ratios = [p / lo for p, lo in zip(res.pipeline_fps, lows, strict=True)]
    reps = range(len(ratios))
    rows = [
        (name, *[f"{v:,.1f}" for v in vals], Spread.of(vals).fmt(1))
        for name, vals in (
            (f"JPEG decode alone ({res.threads} threads)", res.decode_fps),
            (f"engine alone (batch {res.max_batch})", res.engine_fps),
            ("lower of the two", lows),
            ("streamfer camera path (replay)", res.pipeline_fps),
        )
    ]
    rows.append(("camera path / lower limit", *[f"{r:.0%}" for r in ratios],
                 Spread.of(ratios).fmt(2)))  # fmt: skip
    limits = Table(
        f"Limits measured alone vs the camera path (frames/s, {res.threads} cores)",
        ("measurement", *[f"run {k + 1}" for k in reps], "median (min–max)"),
        tuple(rows),
    )
    stages = Table(
        "Pipeline's own work stages from its decisions (ms per frame; mean / p99), first run "
        "(infer and postprocess are per batch, shared by its frames)",
        ("stage", "mean", "p99"),
        tuple((s, f"{m:.2f}", f"{p:.2f}") for s, (m, p) in res.decision_stages_ms.items()),
    )
    med = Spread.of(ratios).median
    targets = [Target("camera path vs lower of decode and engine limits", f"{med:.0%}",
                      ">= 80%", None if med != med else med >= 0.8)]  # fmt: skip
    after = probe_machine()
    notes = [
        f"frames per pipeline run: {opts.frames}; repetitions interleaved: decode, engine, "
        "pipeline",
        "one-thread split: kafka I/O = consumer poll + final producer flush; preprocess = "
        "letterbox + batch stacking; publish = decision build, encode, producer send; "
        "ONNX Runtime with one intra-op thread",
        "decision latencies overlap in time (threads), so they do not add up to the frame time",
        f"load average after the run: {'/'.join(f'{x:.2f}' for x in after.load_avg)}",
    ]
    return Report("Frame path (camera)", command, machine, [split, limits, stages], targets,
                  notes, raw={"frames": asdict(res)})  # fmt: skip
