"""Limits every codec checks before doing expensive work, and the shared helpers."""

from __future__ import annotations

from dataclasses import dataclass

from streamfer.errors import CodecError
from streamfer.streams.reasons import CODEC_REASONS
from streamfer.streams.records import Record

# Every reason a CodecError may carry (metric label values; DLQ error-reason header):
# the documented dead-letter reasons, each explained in streams.reasons.
REASONS: frozenset[str] = CODEC_REASONS


@dataclass(frozen=True)
class CodecLimits:
    """What a single record may cost before it is rejected."""

    max_message_bytes: int = 16 * 1024 * 1024
    max_image_pixels: int = 3840 * 2160
    max_json_bytes: int = 64 * 1024
    sensor_shape: tuple[int, int] = (100, 6)


def fail_at(where: str, problem: str, reason: str, note: str) -> CodecError:
    """A CodecError worded ``where | problem. Note: note`` carrying ``reason``."""
    return CodecError(f"{where} | {problem}. Note: {note}", reason)


def fail(record: Record, problem: str, reason: str, note: str) -> CodecError:
    """A CodecError worded ``topic[partition]@offset | problem. Note: note``."""
    return fail_at(record.coords, problem, reason, note)


def check_size(record: Record, limit: int, what: str) -> bytes:
    """The record's value, once it is known to be there, non-empty and within ``limit``."""
    value = record.value
    if not value or len(value) > limit:
        raise size_error(record.coords, value, limit, what)
    return value


def size_error(where: str, value: bytes | None, limit: int, what: str) -> CodecError:
    """Why ``value`` (absent, empty or over ``limit``: the caller checked) is not decoded."""
    if value is None:
        return fail_at(where, "null value (a tombstone)", "null_value", f"expected {what}")
    if not value:
        return fail_at(where, "empty value", "empty", f"expected {what}")
    return fail_at(
        where, f"value is {len(value)} bytes", "too_large", f"{what} is limited to {limit} bytes"
    )


def json_failure(record: Record, exc: BaseException, what: str) -> CodecError:
    """The CodecError of a failed ``json.loads``: nesting too deep, or not JSON at all."""
    if isinstance(exc, RecursionError):
        return fail(record, "JSON nested too deeply", "too_deep", f"expected {what}")
    return fail(record, f"invalid JSON ({exc})", "bad_json", f"expected {what}")


def content_type(record: Record) -> str | None:
    return content_type_of(record.header("content-type"), record.coords)


def content_type_of(raw: bytes | None, where: str) -> str | None:
    """The content-type header as lower-case ASCII text (None: no header)."""
    if raw is None:
        return None
    try:
        return raw.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        raise fail_at(
            where, f"content-type header {raw[:40]!r}", "bad_content_type", "expected ASCII"
        ) from None


def parse_raw_type(record: Record, ctype: str, dtype: str) -> tuple[int, ...]:
    """Shape from ``application/x-raw;shape=A,B[,C];dtype=<dtype>``."""
    return parse_raw_type_at(record.coords, ctype, dtype)


def parse_raw_type_at(where: str, ctype: str, dtype: str) -> tuple[int, ...]:
    params: dict[str, str] = {}
    for part in ctype.split(";")[1:]:
        name, _, value = part.partition("=")
        params[name.strip()] = value.strip()
    if params.get("dtype") != dtype:
        raise fail_at(
            where,
            f"content-type {ctype!r}",
            "bad_content_type",
            f"raw payloads must declare dtype={dtype}",
        )
    try:
        shape = tuple(int(x) for x in params.get("shape", "").split(","))
    except ValueError:
        raise fail_at(
            where, f"content-type {ctype!r}", "bad_content_type", "expected shape=N,N[,N]"
        ) from None
    if any(d <= 0 for d in shape):
        raise fail_at(where, f"shape {shape}", "bad_shape", "dimensions must be positive")
    return shape


_INT64_MAX = 2**63 - 1


def int_header(record: Record, name: str) -> int | None:
    """A header holding a non-negative 64-bit decimal integer (a time in ns, a counter)."""
    raw = record.header(name)
    if raw is None:
        return None
    try:
        value = int(raw[:40])
    except ValueError:
        value = -1
    if len(raw) > 40 or not 0 <= value <= _INT64_MAX:
        raise fail(
            record,
            f"{name} header {raw[:40]!r}",
            "bad_header",
            f"expected a decimal integer from 0 to {_INT64_MAX}",
        )
    return value
