"""Sensor samples: single timestamped samples per vehicle in, windows out to the sensor model.

Each record is one sample (``streamfer.streams.codecs.sample``); the processor keeps
per key (vehicle) a :class:`~pipeline.windows.KeyWindows` and hands the engine
every window a sample completes, attributed to that sample's record (a
record that completes two windows gets two decisions). A sample that
completes none is *absorbed* (resolved without a decision once its state is
written); a late one is dropped with reason ``late``. The key state lives in
memory, or with ``state.enabled`` in the partition's state store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamfer.errors import CodecError, ConfigError
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.processors.base import Prepared, Reject, StateCodec, StateView, accepted
from streamfer.pipeline.processors.sensor import SensorProcessor
from streamfer.pipeline.windows import KeyWindows, KeyWindowsCodec, WindowAssembler
from streamfer.streams.codecs.limits import fail
from streamfer.streams.codecs.sample import decode_sample
from streamfer.streams.records import RecordBatch


class SampleProcessor(SensorProcessor):
    """``kind: sensor-sample``: samples in, windows assembled per key, the sensor model's
    event class out (model inputs, postprocessing and results as :class:`SensorProcessor`)."""

    def _configure(self, stream: StreamConfig) -> None:
        w, shape = stream.windows, self.shape
        if (w.size, w.channels) != shape:
            raise ConfigError(
                f"{stream.name}.windows | size {w.size} x channels {w.channels}, the model "
                f"takes windows of {shape[0]} x {shape[1]}. Note: set windows.size and "
                "windows.channels to the model's window"
            )
        self.assembler = WindowAssembler(w.size, w.hop, w.channels, int(w.reorder_ms * 1e6))
        self.codec = KeyWindowsCodec(w.size, w.channels)
        self._keys: dict[str, KeyWindows] = {}  # without a state store

    def prepare(self, batch: RecordBatch) -> Prepared:
        return self._prepare(batch, None)

    def state_codec(self) -> StateCodec[Any]:
        return self.codec

    def prepare_with_state(self, batch: RecordBatch, state: StateView[Any]) -> Prepared:
        return self._prepare(batch, state)

    def _prepare(self, batch: RecordBatch, view: StateView[Any] | None) -> Prepared:
        samples, rejects = self._decode(batch)
        states = self._states([k for _, k, _, _ in samples], view)
        rows: list[int] = []
        windows: list[np.ndarray] = []
        absorbed: list[int] = []
        late: list[int] = []
        add = self.assembler.add
        for row, key, ts, sample in samples:
            done = add(states[key], ts, sample)
            if done is None:
                late.append(row)
            elif done:
                rows += [row] * len(done)
                windows += done
            else:
                absorbed.append(row)
        if view is not None:
            offsets = batch.offsets
            kept = [(k, offsets[r]) for r, k, _, _ in samples]
            view.updated([k for k, _ in kept], [o for _, o in kept])
        feeds = np.stack(windows) if windows else np.empty((0, *self.shape), dtype=np.float32)
        return Prepared(
            batch,
            accepted(rows),
            {self.input_name: feeds},
            rejects=rejects,
            absorbed=accepted(absorbed),
            dropped={"late": accepted(late)} if late else None,
        )

    def _decode(self, batch: RecordBatch) -> tuple[list[tuple[int, str, int, np.ndarray]],
                                                   list[Reject]]:  # fmt: skip
        out = []
        rejects = []
        channels = self.assembler.channels
        for i in range(len(batch)):
            record = batch.record(i)
            try:
                if record.key is None:
                    raise fail(record, "no key", "missing_key", "expected the vehicle id as key")
                ts, sample = decode_sample(record, channels)
            except CodecError as exc:
                rejects.append(Reject(i, exc.reason, exc))
                continue
            out.append((i, record.key.decode("utf-8", "replace"), ts, sample))
        return out, rejects

    def _states(self, keys: list[str], view: StateView[Any] | None) -> dict[str, KeyWindows]:
        distinct = list(dict.fromkeys(keys))
        if view is None:
            memory = self._keys
            for key in distinct:
                if key not in memory:
                    memory[key] = self.assembler.new()
            return memory
        got = view.get_many(distinct)
        states = {}
        for key, state in zip(distinct, got, strict=True):
            if state is None:
                state = self.assembler.new()
                view.put(key, state)
            states[key] = state
        return states
