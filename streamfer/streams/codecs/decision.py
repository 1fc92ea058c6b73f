"""The decision record (output), ``streamfer.decision.v1``: JSON Schema and a fast validator.

Example::

    {"schema": "streamfer.decision.v1", "kind": "transaction",
     "source": {"topic": "payments.tx", "partition": 3, "offset": 1042, "key": "card-17"},
     "model": {"name": "fraud", "version": "1", "engine": "onnxruntime", "precision": "fp32"},
     "result": {"fraud_score": 0.93, "action": "decline"},
     "batch_size": 64,
     "latency_ms": {"broker": 1.2, "queue": 0.4, "preprocess": 0.1, "infer": 2.0,
                    "postprocess": 0.1, "publish": null, "e2e": 3.9}}

``result`` by kind: camera ``{"detections": [{"label", "score", "box": [x1, y1, x2, y2]}]}``
(frame pixels); sensor ``{"class", "score"}``; transaction ``{"fraud_score", "action"}``
with action approve | review | decline; custom (a processor plug-in's stream): any object,
the plug-in's own. A latency stage not measured when the decision
is encoded (``publish``, ``e2e``) is null. ``source.key`` is the UTF-8 key or null.
Extra top-level fields are allowed; the listed ones are required.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from streamfer.errors import CodecError

SCHEMA_ID = "streamfer.decision.v1"
KINDS = ("camera", "sensor", "transaction", "custom")
ACTIONS = ("approve", "review", "decline")
LATENCY_STAGES = ("broker", "queue", "preprocess", "infer", "postprocess", "publish", "e2e")

_NUM = {"type": "number"}
_SCORE = {"type": "number", "minimum": 0, "maximum": 1}
_STR = {"type": "string", "minLength": 1}


def _obj(props: dict[str, Any], extra: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": extra,
    }


_DETECTION = _obj(
    {
        "label": _STR,
        "score": _SCORE,
        "box": {"type": "array", "items": _NUM, "minItems": 4, "maxItems": 4},
    }
)
_RESULTS = {
    "camera": _obj({"detections": {"type": "array", "items": _DETECTION}}),
    "sensor": _obj({"class": _STR, "score": _SCORE}),
    "transaction": _obj({"fraud_score": _SCORE, "action": {"enum": list(ACTIONS)}}),
}

DECISION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    **_obj(
        {
            "schema": {"const": SCHEMA_ID},
            "kind": {"enum": list(KINDS)},
            "source": _obj(
                {
                    "topic": _STR,
                    "partition": {"type": "integer", "minimum": 0},
                    "offset": {"type": "integer", "minimum": 0},
                    "key": {"type": ["string", "null"]},
                }
            ),
            "model": _obj({"name": _STR, "version": _STR, "engine": _STR, "precision": _STR}),
            "result": {"type": "object"},
            "batch_size": {"type": "integer", "minimum": 1},
            "latency_ms": _obj(
                {stage: {"type": ["number", "null"], "minimum": 0} for stage in LATENCY_STAGES}
            ),
        },
        extra=True,
    ),
    "allOf": [
        {"if": {"properties": {"kind": {"const": kind}}}, "then": {"properties": {"result": r}}}
        for kind, r in _RESULTS.items()
    ],
}


class _Invalid(Exception):
    pass


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and len(v) > 0


def _need(cond: bool, where: str) -> None:
    if not cond:
        raise _Invalid(where)


def _exact(obj: Any, keys: tuple[str, ...], where: str) -> Mapping[str, Any]:
    _need(isinstance(obj, Mapping), f"{where} is not an object")
    _need(set(obj) == set(keys), f"{where} keys {sorted(obj)} (expected {sorted(keys)})")
    return obj  # type: ignore[no-any-return]


def _score(v: Any) -> bool:
    return _is_num(v) and 0 <= v <= 1


def _check(d: Any) -> None:
    _need(isinstance(d, Mapping), "decision is not an object")
    _need(d.get("schema") == SCHEMA_ID, f"schema={d.get('schema')!r}")
    kind = d.get("kind")
    _need(kind in KINDS, f"kind={kind!r}")
    src = _exact(d.get("source"), ("topic", "partition", "offset", "key"), "source")
    _need(_is_str(src["topic"]), "source.topic")
    _need(_is_int(src["partition"]) and src["partition"] >= 0, "source.partition")
    _need(_is_int(src["offset"]) and src["offset"] >= 0, "source.offset")
    _need(src["key"] is None or isinstance(src["key"], str), "source.key")
    model = _exact(d.get("model"), ("name", "version", "engine", "precision"), "model")
    _need(all(_is_str(v) for v in model.values()), "model fields must be non-empty strings")
    batch = d.get("batch_size")
    _need(_is_int(batch) and batch >= 1, f"batch_size={batch!r}")
    lat = _exact(d.get("latency_ms"), LATENCY_STAGES, "latency_ms")
    for stage, v in lat.items():
        _need(v is None or (_is_num(v) and v >= 0), f"latency_ms.{stage}={v!r}")
    res = d.get("result")
    if kind == "custom":
        _need(isinstance(res, Mapping), "result is not an object")
    elif kind == "transaction":
        res = _exact(res, ("fraud_score", "action"), "result")
        _need(_score(res["fraud_score"]), "result.fraud_score")
        _need(res["action"] in ACTIONS, f"result.action={res['action']!r}")
    elif kind == "sensor":
        res = _exact(res, ("class", "score"), "result")
        _need(_is_str(res["class"]) and _score(res["score"]), "result.class/score")
    else:
        dets = _exact(res, ("detections",), "result")["detections"]
        _need(isinstance(dets, list), "result.detections is not an array")
        for det in dets:
            det = _exact(det, ("label", "score", "box"), "detection")
            box = det["box"]
            _need(_is_str(det["label"]) and _score(det["score"]), "detection label/score")
            _need(isinstance(box, list) and len(box) == 4 and all(map(_is_num, box)), "box")


def validate_decision(obj: Any) -> None:
    """Raise CodecError(reason "bad_decision") unless ``obj`` matches DECISION_SCHEMA."""
    try:
        _check(obj)
    except _Invalid as exc:
        raise CodecError(
            f"decision | {exc}. Note: expected a {SCHEMA_ID} object (see DECISION_SCHEMA)",
            "bad_decision",
        ) from None


def encode_decision(decision: Mapping[str, Any], *, validate: bool = True) -> bytes:
    """Compact UTF-8 JSON for one decision, validated first unless told otherwise."""
    if validate:
        validate_decision(decision)
    return json.dumps(decision, separators=(",", ":"), allow_nan=False).encode()
