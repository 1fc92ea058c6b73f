"""How a stream reads its records: limits checked before decoding, camera headers and
preprocessing, sample windows, and what a refused dead letter does."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamfer.engines.gpu import PreprocessDevice
from streamfer.pipeline.config.base import Frozen, option_default
from streamfer.streams.codecs import CodecLimits

# samples x channels of a sensor window, unless the model says otherwise: the codecs' default
SENSOR_WINDOW: tuple[int, int] = option_default(CodecLimits, "sensor_shape")


class FramesConfig(Frozen):
    """Camera header policy. ``missing_capture_ts``: a frame without a ``capture-ts-ns``
    header has its deadline run from the Kafka record timestamp (``record_timestamp``,
    counted in ``streamfer_deadline_fallbacks_total``) or goes to the dead-letter topic
    with reason ``missing_header`` (``dead_letter``)."""

    missing_capture_ts: Literal["record_timestamp", "dead_letter"] = "record_timestamp"
    """A frame without capture-ts-ns: deadline from the Kafka timestamp, or dead letter
    missing_header."""


class DeadLettersConfig(Frozen):
    """``on_failure``: a dead letter the cluster will not take (after the client's own
    retries) stops the stream with an error naming the record (``stop``), or is counted
    as dropped with reason ``dead_letter_failed`` and skipped (``skip``)."""

    on_failure: Literal["stop", "skip"] = "stop"
    """A dead letter the cluster refuses: stop the stream, or count it as dropped
    (dead_letter_failed) and go on."""


class LimitsConfig(Frozen):
    """Checked before any expensive decode; a record over a limit goes to the DLQ."""

    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    """Larger record values (frames, raw windows) are dead-lettered as too_large."""
    max_image_pixels: int = Field(default=4096 * 4096, ge=1)
    """Images with more pixels (read from the header) are dead-lettered as image_too_large."""
    max_json_bytes: int = Field(default=64 * 1024, ge=1)
    """Larger JSON values are dead-lettered as too_large."""

    def codec_limits(self, sensor_shape: tuple[int, int] = SENSOR_WINDOW) -> CodecLimits:
        """These limits as the codecs take them."""
        return CodecLimits(
            max_message_bytes=self.max_message_bytes,
            max_image_pixels=self.max_image_pixels,
            max_json_bytes=self.max_json_bytes,
            sensor_shape=sensor_shape,
        )


class WindowsConfig(Frozen):
    """``kind: sensor-sample``: windows assembled per key from single samples (``size``
    samples, a new window every ``hop``; ``channels`` per sample). A sample is held
    until the key's newest event time is ``reorder_ms`` past it, so samples out of
    order by less than that are put in order; older ones are dropped as ``late``.
    ``size`` and ``channels`` must match the sensor model's input window."""

    size: int = Field(default=SENSOR_WINDOW[0], ge=1, le=100_000)
    """Samples per window; must match the sensor model's input."""
    hop: int = Field(default=50, ge=1)
    """A new window every this many samples."""
    channels: int = Field(default=SENSOR_WINDOW[1], ge=1, le=1024)
    """Values per sample; must match the sensor model's input."""
    reorder_ms: float = Field(default=200.0, ge=0)
    """Samples late by less than this are put in order; older ones are dropped as late."""


class PreprocessConfig(Frozen):
    """Where camera frames are decoded and letterboxed: ``auto`` is the GPU when the
    engine is TensorRT and the GPU libraries are installed (streamfer.engines.gpu)."""

    device: PreprocessDevice = "auto"
    """Where camera frames are decoded and letterboxed; auto: the GPU when the engine is TensorRT
    and the GPU libraries are installed."""
