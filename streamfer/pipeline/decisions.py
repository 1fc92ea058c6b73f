"""Decision documents (``streamfer.decision.v1``): the one encoder of a decision.

Every decision streamfer writes, and every decision the benchmarks' own loops
write, is encoded here (its schema and validator are
``streamfer.streams.codecs.decision``, which also holds the schema id).

Most of a decision is the same for every record of one engine batch from one
partition: the stream, kind, model identity, source topic and partition, the
batch size and the shared stage latencies. :class:`DecisionEncoder` renders
those parts once per segment and fills in only what differs per record (the
offset, the key, the result, the broker latency), so encoding costs about as
much as encoding the result alone. The output follows
``streamfer.streams.codecs.DECISION_SCHEMA`` (checked in the tests, not per record).

``latency_ms``: ``broker`` (record timestamp -> consumed), ``queue`` (waiting
for the engine, preprocessing excluded), ``preprocess``, ``infer`` and
``postprocess`` are measured before the decision is written; ``publish`` and
``e2e`` end at the broker's acknowledgement of the decision itself, which a
document cannot contain: they are always null here and measured in
``streamfer_stage_latency_seconds{stage="publish"}``,
``streamfer_e2e_latency_seconds`` and the run summaries (e2e is defined in
:mod:`streamfer.streams.acks`). A segment encoded without timing (the
benchmark baselines, which measure none) has every latency null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from streamfer.errors import CodecError
from streamfer.streams.codecs.decision import SCHEMA_ID as SCHEMA

if TYPE_CHECKING:
    from streamfer.engines.base import Runner
    from streamfer.streams.records import Record

_encode = msgspec.json.Encoder().encode
_KEY_CACHE = 100_000  # keys whose JSON is kept (then forgotten all at once)


@dataclass(frozen=True)
class ModelIdentity:
    """What decided: model name and version (its version directory, else the ONNX
    metadata), engine kind and precision."""

    name: str
    version: str
    engine: str
    precision: str

    @classmethod
    def of(cls, model: str, runner: Runner, version: str | None = None) -> ModelIdentity:
        """Model ``model`` as ``runner`` runs it. ``version``: the version directory it was
        loaded from (``streamfer.engines.versions``); None (one ONNX file): the file's
        ``streamfer.version`` metadata."""
        info = runner.info
        if version is None:
            version = runner.metadata.get("streamfer.version", "0")
        return cls(model, version, info.kind, info.precision)


@dataclass(frozen=True)
class SegmentTiming:
    """Stage latencies shared by the records of one segment (ms)."""

    queue_ms: float
    preprocess_ms: float
    infer_ms: float
    postprocess_ms: float


def key_text(key: bytes | None) -> str | None:
    """Record keys are ids (card, camera, vehicle): UTF-8 text, else ``hex:...``."""
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + key.hex()


def _ms(value: float) -> bytes:
    return b"%.3f" % max(0.0, value)


def _latency_rest(timing: SegmentTiming | None) -> bytes:
    """The latencies after ``broker`` (shared by a segment's records)."""
    if timing is None:
        return b',"queue":null,"preprocess":null,"infer":null,"postprocess":null,' \
            b'"publish":null,"e2e":null}'
    return (
        b',"queue":'
        + _ms(timing.queue_ms)
        + b',"preprocess":'
        + _ms(timing.preprocess_ms)
        + b',"infer":'
        + _ms(timing.infer_ms)
        + b',"postprocess":'
        + _ms(timing.postprocess_ms)
        + b',"publish":null,"e2e":null}'
    )


class DecisionEncoder:
    """Encodes the decisions of one stream (one per stream; used by its engine thread only:
    it keeps the JSON of recent keys)."""

    def __init__(self, stream: str, kind: str, model: ModelIdentity) -> None:
        self._head = (
            b'{"schema":'
            + _encode(SCHEMA)
            + b',"stream":'
            + _encode(stream)
            + b',"kind":'
            + _encode(kind)
            + b',"source":{"topic":'
        )
        self._key_json: dict[bytes | None, bytes] = {}
        self._model = b',"model":' + _encode(
            {
                "name": model.name,
                "version": model.version,
                "engine": model.engine,
                "precision": model.precision,
            }
        )

    def encode_segment(
        self,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        keys: Sequence[bytes | None],
        results: Sequence[Mapping[str, Any]],
        extras: Sequence[Mapping[str, Any] | None] | None,
        broker_ms: Sequence[float] | None,
        batch_size: int,
        timing: SegmentTiming | None,
    ) -> list[bytes | CodecError]:
        """One document per record; a CodecError (``bad_decision``) for a result that is
        not JSON or holds NaN/infinity. ``broker_ms`` must not be negative; ``timing``
        None: no latency measured (``broker_ms`` is then not read)."""
        prefix = self._head + _encode(topic) + b',"partition":%d,"offset":' % partition
        broker_tail = b',"batch_size":%d,"latency_ms":{"broker":' % batch_size
        rest = _latency_rest(timing)
        model = self._model
        keyed = self._key_json
        out: list[bytes | CodecError] = []
        for i, offset in enumerate(offsets):
            result = results[i]
            try:
                encoded = _encode(result)
                extra = extras[i] if extras is not None else None
                more = _extra_fields(extra) if extra else b""
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
                out.append(
                    CodecError(
                        f"{topic}[{partition}]@{offset} | decision not encodable as JSON "
                        f"({type(exc).__name__}: {exc}). Note: a result holds JSON values only",
                        "bad_decision",
                    )
                )
                continue
            # msgspec writes NaN as null: only a document with a null may hold one (the
            # extra fields are checked by _extra_fields)
            if b"null" in encoded and not finite(result):
                out.append(
                    CodecError(
                        f"{topic}[{partition}]@{offset} | decision holds NaN or infinity "
                        f"(result {_short_repr(result)}). Note: expected finite numbers",
                        "bad_decision",
                    )
                )
                continue
            key = keys[i]
            key_json = keyed.get(key)
            if key_json is None:
                key_json = self._remember_key(key)
            out.append(
                b"".join(
                    (
                        prefix,
                        b"%d" % offset,
                        b',"key":',
                        key_json,
                        b"}",
                        model,
                        b',"result":',
                        encoded,
                        more,
                        broker_tail,
                        b"null" if broker_ms is None else b"%.3f" % broker_ms[i],
                        rest,
                        b"}",
                    )
                )
            )
        return out

    def encode(
        self,
        record: Record,
        result: Mapping[str, Any],
        *,
        batch_size: int,
        extra: Mapping[str, Any] | None = None,
        broker_ms: float | None = None,
        timing: SegmentTiming | None = None,
    ) -> bytes:
        """The document of one record (benchmarks that decide a record at a time);
        CodecError as :meth:`encode_segment` says."""
        (doc,) = self.encode_segment(
            record.topic, record.partition, [record.offset], [record.key], [result],
            None if extra is None else [extra], None if broker_ms is None else [broker_ms],
            batch_size, timing,
        )  # fmt: skip
        if isinstance(doc, CodecError):
            raise doc
        return doc

    def _remember_key(self, key: bytes | None) -> bytes:
        """The JSON of a key's text, kept: ids (cards, cameras) come again and again."""
        if len(self._key_json) >= _KEY_CACHE:
            self._key_json.clear()
        encoded = self._key_json[key] = _encode(key_text(key))
        return encoded


# the fields every decision has: an extra field may not write them a second time
RESERVED = frozenset(
    ("schema", "stream", "kind", "source", "model", "result", "batch_size", "latency_ms")
)


def _extra_fields(extra: Mapping[str, Any]) -> bytes:
    """``,"name":value`` per extra top-level field; ValueError for a reserved name or a
    NaN/infinity (msgspec writes those as null)."""
    taken = RESERVED.intersection(extra)
    if taken:
        raise ValueError(
            f"extra fields {sorted(taken)} are the decision's own. Note: expected other "
            f"names than {sorted(RESERVED)}"
        )
    more = b"".join(b',"%s":%s' % (_encode(k)[1:-1], _encode(v)) for k, v in extra.items())
    if b"null" in more and not finite(extra):
        raise ValueError(f"extra fields {dict(extra)!r} hold NaN or infinity")
    return more


def _short_repr(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a result (JSON has no such numbers)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True
