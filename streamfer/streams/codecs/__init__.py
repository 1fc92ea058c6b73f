"""Record codecs for the three input kinds and the decision output (contracts v1)."""

from streamfer.streams.codecs.camera import Frame, decode_camera, encode_camera
from streamfer.streams.codecs.decision import (
    DECISION_SCHEMA,
    SCHEMA_ID,
    encode_decision,
    validate_decision,
)
from streamfer.streams.codecs.limits import REASONS, CodecLimits
from streamfer.streams.codecs.sensor import decode_sensor, encode_sensor
from streamfer.streams.codecs.transaction import decode_transaction, encode_transaction

__all__ = [
    "DECISION_SCHEMA",
    "REASONS",
    "SCHEMA_ID",
    "CodecLimits",
    "Frame",
    "decode_camera",
    "decode_sensor",
    "decode_transaction",
    "encode_camera",
    "encode_decision",
    "encode_sensor",
    "encode_transaction",
    "validate_decision",
]
