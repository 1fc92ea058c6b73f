"""Why a record was not decided: the closed sets of dead-letter and drop reasons.

Every consumed record ends in one of three ways: a decision, a counted drop,
or a dead letter. A drop or a dead letter carries exactly one reason code
from the tables below; the code is the ``reason`` label of
``streamfer_records_dropped_total`` / ``streamfer_records_dead_lettered_total``
and the ``error-reason`` header of the dead letter. No other code is ever
written: a plug-in processor's own code is written as ``processor_error``,
with the code it gave kept in the message.

docs/delivery.md shows the same tables (a test compares them).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class Reason(NamedTuple):
    """What a reason code means and where in the pipeline it is given."""

    meaning: str
    where: str


_DECODE = "decode (all kinds)"

DEAD_LETTER_REASONS: Mapping[str, Reason] = MappingProxyType(
    {
        "null_value": Reason("the record has no value at all (a tombstone, keyed or not)", _DECODE),
        "empty": Reason("the value is zero bytes", _DECODE),
        "too_large": Reason(
            "the value is over `limits.max_message_bytes` (frames, raw windows) or "
            "`limits.max_json_bytes` (JSON)",
            _DECODE,
        ),
        "bad_content_type": Reason(
            "the content-type header is unknown, not ASCII, malformed, or contradicts the bytes",
            "decode (camera, sensor)",
        ),
        "bad_header": Reason(
            "a capture-ts-ns or frame-seq header that is not a decimal integer from 0 to 2^63-1",
            "decode (camera, sensor-sample)",
        ),
        "missing_header": Reason(
            "no capture-ts-ns header while `frames.missing_capture_ts: dead_letter`",
            "decode (camera)",
        ),
        "missing_key": Reason(
            "no record key where the stream groups by key (a sensor sample's vehicle id)",
            "decode (sensor-sample)",
        ),
        "image_too_large": Reason(
            "width x height over `limits.max_image_pixels`, read from the image header "
            "before decoding",
            "decode (camera)",
        ),
        "corrupt_image": Reason(
            "not a decodable JPEG or PNG, or its header and pixels disagree",
            "decode (camera)",
        ),
        "bad_shape": Reason(
            "raw pixels, a window or a sample whose shape is not the declared or expected one",
            "decode (camera, sensor, sensor-sample)",
        ),
        "bad_json": Reason(
            "not UTF-8 JSON, or not the JSON type expected", "decode (sensor, transaction)"
        ),
        "too_deep": Reason(
            "JSON nested deeper than the decoder allows", "decode (sensor, transaction)"
        ),
        "missing_field": Reason("a required field is absent", "decode (transaction)"),
        "bad_field": Reason("a field of the wrong type or out of range", "decode (transaction)"),
        "non_finite": Reason(
            "NaN or infinity where a number is required",
            "decode (sensor, sensor-sample, transaction)",
        ),
        "number_out_of_range": Reason(
            "a JSON number too large for a float", "decode (sensor, transaction)"
        ),
        "engine_error": Reason(
            "inference fails on this record alone (the rest of its batch is decided)",
            "engine",
        ),
        "bad_decision": Reason(
            "the model's result cannot be written as a decision (NaN or infinity, not JSON)",
            "publish",
        ),
        "internal_error": Reason(
            "a built-in processor raised on this record: a bug (the exception is in the "
            "message, its traceback in the DEBUG log)",
            "decode or results",
        ),
        "processor_error": Reason(
            "a plug-in processor raised on this record, returned the wrong number of results, "
            "or gave a reason not in this table",
            "decode or results",
        ),
    }
)

DROP_REASONS: Mapping[str, Reason] = MappingProxyType(
    {
        "stale": Reason(
            "a frame past its deadline (`deadline_ms` from capture-ts-ns) before the engine",
            "batcher (realtime camera streams, `drop_stale`)",
        ),
        "superseded": Reason(
            "a newer frame of the same key arrived before this one reached the engine",
            "batcher (`latest_per_key`)",
        ),
        "late": Reason(
            "a sensor sample older than its vehicle's window by more than `windows.reorder_ms`",
            "windows (`kind: sensor-sample`)",
        ),
        "dead_letter_failed": Reason(
            "the dead letter itself was refused by the cluster and "
            "`dead_letters.on_failure: skip`",
            "publish",
        ),
    }
)

# The codes a processor's Reject or a CodecError may carry.
CODEC_REASONS: frozenset[str] = frozenset(DEAD_LETTER_REASONS)


def dead_letter_reason(reason: str) -> str:
    """``reason`` if it is a documented dead-letter reason, else ``processor_error``."""
    return reason if reason in DEAD_LETTER_REASONS else "processor_error"


def markdown_table(reasons: Mapping[str, Reason]) -> str:
    """The docs' table of ``reasons`` (``python -m streamfer.streams.reasons`` prints both)."""
    rows = ["| reason | what it means | where |", "|---|---|---|"]
    rows += [f"| `{code}` | {r.meaning} | {r.where} |" for code, r in reasons.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print("Dead letters:\n")
    print(markdown_table(DEAD_LETTER_REASONS))
    print("\nDrops:\n")
    print(markdown_table(DROP_REASONS))
