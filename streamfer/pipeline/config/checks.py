"""Cross-field checks of a pipeline config, one generator of Problems per section.

They run on every section that parsed, even when others did not, so one
``load_config`` reports every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from streamfer.engines.versions import select
from streamfer.errors import EngineError
from streamfer.pipeline.config import plugins
from streamfer.pipeline.config.kafka import KafkaConfig
from streamfer.pipeline.config.model import ModelConfig
from streamfer.pipeline.config.problems import Problem
from streamfer.pipeline.config.stream import Kind, StreamConfig
from streamfer.streams.settings import SaslMechanism

STATEFUL_KINDS: tuple[str, ...] = ("transaction", "sensor-sample")  # processors with per-key state
_STATEFUL_METHODS = ("state_codec", "prepare_with_state")  # StatefulProcessor's
_STATEFUL_PLUGIN = "kind: custom with a StatefulProcessor (state_codec, prepare_with_state)"

TOPIC_MAX_LENGTH = 249  # Kafka's limit on a topic name
_TOPIC_CHARS = re.compile(r"[a-zA-Z0-9._-]")
TOPIC_NAME_RULE: tuple[str, ...] = (
    f"1 to {TOPIC_MAX_LENGTH} characters",
    "letters, digits, '.', '_' and '-' only",
    "not '.' or '..'",
)


def topic_name_problem(name: str) -> str | None:
    """Why Kafka would refuse ``name`` as a topic name; None when it would not."""
    if not name:
        return "empty topic name"
    if name in (".", ".."):
        return f"{name!r} is not a topic name"
    if len(name) > TOPIC_MAX_LENGTH:
        return f"topic name of {len(name)} characters is too long"
    bad = sorted({c for c in name if not _TOPIC_CHARS.fullmatch(c)})
    if bad:
        return f"topic name with characters Kafka refuses ({''.join(bad)!r})"
    return None


def topic_problems(i: int, s: StreamConfig, group_id: str | None) -> Iterator[Problem]:
    """Every topic the stream reads or writes has a name Kafka accepts; ``group_id``
    (None when the consumer section did not parse) names the state changelog."""
    loc = f"streams[{i}]"
    named = [("input_topic", s.input_topic), ("output_topic", s.output_topic)]
    if s.dlq_topic is not None:
        named.append(("dlq_topic", s.dlq_topic))
    for key, topic in named:
        why = topic_name_problem(topic)
        if why is not None:
            yield Problem(f"{loc}.{key}", why, topic, TOPIC_NAME_RULE)
    derived = []
    if s.dlq_topic is None and topic_name_problem(s.input_topic) is None:
        derived.append(("dlq_topic", "the default dead-letter topic", s.resolved_dlq_topic))
    if s.state.enabled and group_id is not None:
        changelog = s.state_topic(group_id)
        derived.append(("name", "the state changelog topic (<consumer.group_id>.<name>.state)",
                        changelog))  # fmt: skip
    for key, what, topic in derived:
        why = topic_name_problem(topic)
        if why is not None:
            yield Problem(f"{loc}.{key}", f"{what}: {why}", topic, TOPIC_NAME_RULE)


_KIND_SECTIONS: dict[str, tuple[Kind, ...]] = {
    "fraud": ("transaction",),
    "detection": ("camera",),
    "frames": ("camera",),
    "sensor": ("sensor", "sensor-sample"),
    "preprocess": ("camera",),
    "windows": ("sensor-sample",),
}


def stream_problems(
    i: int, s: StreamConfig, models: Mapping[str, ModelConfig | None]
) -> Iterator[Problem]:
    loc = f"streams[{i}]"
    model = models.get(s.model)
    if model is not None and s.batching.max_batch > model.max_batch:
        yield Problem(
            f"{loc}.batching.max_batch",
            f"exceeds models.{s.model}.max_batch",
            s.batching.max_batch,
            [f"<= {model.max_batch}"],
        )
    if s.kind == "transaction" and s.drop_stale:
        yield Problem(f"{loc}.drop_stale", "transactions are never dropped", True, ["false"])
    if s.kind == "transaction" and s.latest_per_key:
        yield Problem(
            f"{loc}.latest_per_key",
            "transactions are never superseded (that drops them)",
            True,
            ["false"],
        )
    if s.mode == "replay" and (s.drop_stale or s.latest_per_key):
        key = "drop_stale" if s.drop_stale else "latest_per_key"
        yield Problem(f"{loc}.{key}", "replay mode drops nothing", True, ["false"])
    if s.drop_stale and s.deadline_ms is None:
        yield Problem(f"{loc}.deadline_ms", "drop_stale needs a deadline", None, ["a number > 0"])
    if s.delivery == "exactly_once" and s.dead_letters.on_failure == "skip":
        # a send the cluster refuses aborts the whole transaction: the record is read
        # again and refused again, for ever, instead of being skipped
        yield Problem(
            f"{loc}.dead_letters.on_failure",
            "a refused dead letter aborts the transaction, so it cannot be skipped",
            "skip",
            ["stop", "skip with delivery: at_least_once"],
        )
    if s.delivery == "exactly_once" and s.state.flush_interval_ms is not None:
        # the entries share each transaction with the offsets: they are written at every commit
        yield Problem(
            f"{loc}.state.flush_interval_ms",
            "exactly_once writes the changelog in every transaction, at each commit",
            s.state.flush_interval_ms,
            ["unset (latency.commit_interval_ms sets it)", "any with delivery: at_least_once"],
        )
    for section, kinds in _KIND_SECTIONS.items():
        if section in s.model_fields_set and s.kind not in kinds:
            yield Problem(
                f"{loc}.{section}",
                f"applies to {' and '.join(kinds)} streams only, this stream is {s.kind}",
                section,
                [f"kind: {k}" for k in kinds],
            )
    if s.preprocess.device == "gpu" and model is not None and model.target == "onnxruntime":
        yield Problem(
            f"{loc}.preprocess.device",
            f"the GPU batch stays in device memory, models.{s.model}.target is onnxruntime",
            "gpu",
            ["auto", "cpu", "gpu with target tensorrt or auto"],
        )
    if s.fraud.review > s.fraud.decline:
        yield Problem(
            f"{loc}.fraud.review",
            "review threshold above decline threshold",
            s.fraud.review,
            [f"<= decline ({s.fraud.decline})"],
        )
    if s.state.enabled and s.kind not in STATEFUL_KINDS and s.kind != "custom":
        yield Problem(
            f"{loc}.state.enabled",
            f"{s.kind} streams keep no per-key state",
            True,
            [f"false, or kind: {' / '.join(STATEFUL_KINDS)}", _STATEFUL_PLUGIN],
        )
    if s.output_topic == s.input_topic or s.resolved_dlq_topic == s.input_topic:
        yield Problem(
            f"{loc}.output_topic",
            "output or DLQ topic equals the input topic",
            s.input_topic,
            ["a different topic"],
        )


def plugin_problems(i: int, s: StreamConfig) -> Iterator[Problem]:
    """Plug-in keys where they belong; the plug-in imports; its own config checks pass.

    Imports the plug-in's module (its code runs, as it would at start) but builds nothing.
    """
    loc = f"streams[{i}]"
    if s.kind == "custom" and s.processor is None:
        yield Problem(
            f"{loc}.processor",
            "required with kind custom",
            None,
            ["package.module:Name", *sorted(plugins.installed())],
        )
    if s.kind != "custom" and s.processor is not None:
        yield Problem(
            f"{loc}.processor",
            f"a whole processor replaces a built-in one only with kind custom (kind is {s.kind})",
            s.processor,
            ["kind: custom", f"postprocessor: to replace only the {s.kind} results step"],
        )
    if s.kind == "custom" and s.postprocessor is not None:
        yield Problem(
            f"{loc}.postprocessor",
            "applies to built-in kinds; a custom processor makes its own results",
            s.postprocessor,
            ["camera", "sensor", "transaction as kind"],
        )
    if s.processor_config and s.plugin is None:
        yield Problem(
            f"{loc}.processor_config",
            "set without a processor or postprocessor to read it",
            sorted(s.processor_config),
            ["processor: ...", "postprocessor: ..."],
        )
    roles: tuple[plugins.Role, ...] = ("processor", "postprocessor")
    for role in roles:
        ref = getattr(s, role)
        if ref is None:
            continue
        try:
            plugin = plugins.load(ref, role)
        except plugins.PluginError as exc:
            yield Problem(f"{loc}.{role}", exc.problem, ref, exc.allowed)
            continue
        for found in plugins.config_problems(plugin, s.processor_config):
            yield plugins.within(f"{loc}.processor_config", found)
        stateful = all(callable(getattr(plugin, m, None)) for m in _STATEFUL_METHODS)
        if role == "processor" and s.state.enabled and not stateful:
            yield Problem(
                f"{loc}.state.enabled",
                f"processor {ref} keeps no per-key state",
                True,
                ["false", _STATEFUL_PLUGIN],
            )


# keys no two streams may share: the problem (given the first stream's index) and the rule
_UNIQUE = {
    "name": ("duplicate of streams[{}].name", "unique names"),
    "input_topic": ("already consumed by streams[{}]", "one stream per input topic"),
}


def reference_problems(
    raw_streams: Sequence[Any], model_names: Sequence[str] | None
) -> Iterator[Problem]:
    """Checks that need only a few raw values, so they run even on streams that failed."""
    first: dict[str, dict[str, int]] = {key: {} for key in _UNIQUE}  # value -> first stream
    for i, s in enumerate(raw_streams):
        if not isinstance(s, Mapping):
            continue
        model = s.get("model")
        if model_names is not None and isinstance(model, str) and model not in model_names:
            yield Problem(f"streams[{i}].model", "unknown model", model, sorted(model_names))
        shadow = s.get("shadow")
        shadow_model = shadow.get("model") if isinstance(shadow, Mapping) else None
        if model_names is not None and isinstance(shadow_model, str):
            if shadow_model not in model_names:
                yield Problem(f"streams[{i}].shadow.model", "unknown model", shadow_model,
                              sorted(model_names))  # fmt: skip
            elif shadow_model == model:
                yield Problem(f"streams[{i}].shadow.model", "the stream's own model",
                              shadow_model, ["another model"])  # fmt: skip
        for key, (problem, allowed) in _UNIQUE.items():
            value, seen = s.get(key), first[key]
            if isinstance(value, str):
                if value in seen:
                    yield Problem(f"streams[{i}].{key}", problem.format(seen[value]), value,
                                  [allowed])  # fmt: skip
                seen.setdefault(value, i)


def kafka_problems(k: KafkaConfig) -> Iterator[Problem]:
    sasl = k.security_protocol.startswith("SASL")
    if sasl and k.sasl_mechanism is None:
        yield Problem(
            "kafka.sasl_mechanism",
            f"required with security_protocol {k.security_protocol}",
            None,
            list(get_args(SaslMechanism)),
        )
    has_password = k.sasl_password is not None or k.sasl_password_file is not None
    if sasl and (k.sasl_username is None or not has_password):
        yield Problem(
            "kafka.sasl_username",
            "SASL needs sasl_username and sasl_password (or sasl_password_file)",
            None,
            ["both set"],
        )
    if k.sasl_password is not None and k.sasl_password_file is not None:
        yield Problem(
            "kafka.sasl_password_file",
            "set together with sasl_password",
            str(k.sasl_password_file),
            ["one of sasl_password, sasl_password_file"],
        )
    if not sasl and k.sasl_mechanism is not None:
        yield Problem(
            "kafka.sasl_mechanism",
            f"set but security_protocol is {k.security_protocol}",
            k.sasl_mechanism,
            ["SASL_PLAINTEXT", "SASL_SSL as security_protocol"],
        )
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file"):
        path: Path | None = getattr(k, key)
        if path is not None and not path.is_file():
            yield Problem(f"kafka.{key}", "file not found", str(path), ["an existing file"])


def model_problems(name: str, m: ModelConfig) -> Iterator[Problem]:
    if not m.path.is_file() and not m.path.is_dir():
        yield Problem(
            f"models.{name}.path", "file not found", str(m.path),
            ["an existing .onnx file", "a directory of versions (<dir>/<version>/model.onnx)"],
        )  # fmt: skip
        return
    try:
        select(m.path, m.version)
    except EngineError as exc:
        yield Problem(f"models.{name}.version", str(exc), m.version)
