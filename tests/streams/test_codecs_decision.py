"""Decision records: the fast validator agrees with DECISION_SCHEMA (checked by jsonschema)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfer.errors import CodecError
from streamfer.streams.codecs import DECISION_SCHEMA, SCHEMA_ID, encode_decision, validate_decision
from streamfer.streams.codecs.decision import LATENCY_STAGES

VALIDATOR = jsonschema.Draft202012Validator(DECISION_SCHEMA)
score = st.floats(0, 1)
ms = st.none() | st.floats(0, 1e5)
name = st.text(min_size=1, max_size=12)

results = {
    "camera": st.fixed_dictionaries(
        {
            "detections": st.lists(
                st.fixed_dictionaries(
                    {
                        "label": name,
                        "score": score,
                        "box": st.lists(st.floats(-1e4, 1e4), min_size=4, max_size=4),
                    }
                ),
                max_size=5,
            )
        }
    ),
    "sensor": st.fixed_dictionaries({"class": name, "score": score}),
    "transaction": st.fixed_dictionaries(
        {"fraud_score": score, "action": st.sampled_from(["approve", "review", "decline"])}
    ),
}


@st.composite
def decisions(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(results)))
    return {
        "schema": SCHEMA_ID,
        "kind": kind,
        "source": {
            "topic": draw(name),
            "partition": draw(st.integers(0, 1000)),
            "offset": draw(st.integers(0, 2**62)),
            "key": draw(st.none() | st.text(max_size=20)),
        },
        "model": {"name": "fraud", "version": "1", "engine": "onnxruntime", "precision": "fp32"},
        "result": draw(results[kind]),
        "batch_size": draw(st.integers(1, 1024)),
        "latency_ms": {stage: draw(ms) for stage in LATENCY_STAGES},
    }


def fast_ok(obj: Any) -> bool:
    try:
        validate_decision(obj)
    except CodecError as exc:
        assert exc.reason == "bad_decision"
        return False
    return True


@given(decisions())
@settings(max_examples=150, deadline=None)
def test_valid_decisions_pass_both_and_encode_to_json(decision: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(decision)
    assert fast_ok(decision)
    assert json.loads(encode_decision(decision)) == decision


MUTATIONS = [
    lambda d: d.pop("latency_ms"),
    lambda d: d.__setitem__("schema", "streamfer.decision.v2"),
    lambda d: d.__setitem__("kind", "audio"),
    lambda d: d["source"].__setitem__("partition", -1),
    lambda d: d["source"].__setitem__("offset", "12"),
    lambda d: d["source"].pop("key"),
    lambda d: d["source"].__setitem__("extra", 1),
    lambda d: d["model"].__setitem__("engine", ""),
    lambda d: d["model"].pop("precision"),
    lambda d: d.__setitem__("batch_size", 0),
    lambda d: d.__setitem__("batch_size", True),
    lambda d: d["latency_ms"].__setitem__("infer", -0.5),
    lambda d: d["latency_ms"].__setitem__("queue", "1"),
    lambda d: d["latency_ms"].pop("e2e"),
    lambda d: d.__setitem__("result", {"score": 0.5}),
    lambda d: d.__setitem__("result", []),
]


@given(decisions(), st.sampled_from(range(len(MUTATIONS))))
@settings(max_examples=200, deadline=None)
def test_broken_decisions_fail_both(decision: dict[str, Any], which: int) -> None:
    bad = copy.deepcopy(decision)
    MUTATIONS[which](bad)
    assert not VALIDATOR.is_valid(bad)
    assert not fast_ok(bad)
    with pytest.raises(CodecError):
        encode_decision(bad)


def test_kind_specific_result_rules() -> None:
    base = {
        "schema": SCHEMA_ID,
        "kind": "transaction",
        "source": {"topic": "t", "partition": 0, "offset": 1, "key": None},
        "model": {"name": "fraud", "version": "1", "engine": "onnxruntime", "precision": "fp32"},
        "result": {"fraud_score": 0.2, "action": "approve"},
        "batch_size": 1,
        "latency_ms": dict.fromkeys(LATENCY_STAGES, 0.0),
    }
    assert fast_ok(base) and VALIDATOR.is_valid(base)
    for kind, result in [
        ("transaction", {"fraud_score": 1.5, "action": "approve"}),
        ("transaction", {"fraud_score": 0.5, "action": "block"}),
        ("sensor", {"fraud_score": 0.2, "action": "approve"}),
        ("sensor", {"class": "impact", "score": 2}),
        ("camera", {"detections": [{"label": "car", "score": 0.5, "box": [1, 2, 3]}]}),
        ("camera", {"detections": [{"label": "", "score": 0.5, "box": [1, 2, 3, 4]}]}),
    ]:
        bad = {**base, "kind": kind, "result": result}
        assert not VALIDATOR.is_valid(bad), result
        assert not fast_ok(bad), result
