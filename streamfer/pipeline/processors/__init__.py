"""Processors: per-kind decoding/features before the engine and results after it.

What a plug-in author imports, all from here::

    from streamfer.pipeline.processors import (
        Processor, Postprocessor,           # the interface (Protocols)
        Prepared, Reject, Output, Result,   # what prepare and results return
        ProcessorContext,                   # what a plug-in is built with
        RecordProcessor,                    # a base for per-record plug-ins (~20 lines)
        StatefulRecordProcessor,            # ... with a value per key in the state store
        StatefulProcessor,                  # the stateful interface (Protocol)
        StateCodec, StateView,              # a value <-> bytes (exactly); a partition's values
        ConfigProblem,                      # what validate_config yields
        CodecError, ProcessorError,         # refuse a record / processor code failed
        ConfigError,                        # a plug-in that cannot run with its config/model
        Record, RecordBatch,                # what prepare and decode receive
        reject, accepted,                   # helpers for batch-at-a-time processors
    )

The interface is in :mod:`streamfer.pipeline.processors.base` (its module docstring:
the contract, and "Stateful processors": when state is read and written, what a
codec must guarantee, TTL, restore after a crash or a rebalance), plug-in loading and
configuration in :mod:`streamfer.pipeline.processors.plugins`, the per-record bases in
:mod:`streamfer.pipeline.processors.record`. The worked stateful plug-in is
``examples/telemetry-anomaly`` (a baseline per machine). ``make_processor(stream, runner, threads)``
(:mod:`streamfer.pipeline.processors.factory`) builds the processor of a configured
stream: the built-in one of its kind (with a plug-in postprocessor in place of its
results step when the stream names one), or for ``kind: custom`` the plug-in its
``processor`` names.
"""

from __future__ import annotations

from streamfer.errors import CodecError, ConfigError, ProcessorError
from streamfer.pipeline.processors.base import (
    NO_EVENT_TIME,
    Output,
    Postprocessor,
    Prepared,
    Processor,
    Reject,
    Result,
    StateCodec,
    StatefulProcessor,
    StateView,
    accepted,
    processor_error,
    reject,
)
from streamfer.pipeline.processors.context import ProcessorContext
from streamfer.pipeline.processors.factory import engine_wiring, make_processor, processor_context
from streamfer.pipeline.processors.plugins import ENTRY_POINT_GROUP, ConfigProblem
from streamfer.pipeline.processors.record import RecordProcessor, StatefulRecordProcessor
from streamfer.streams.records import Record, RecordBatch

__all__ = [
    "ENTRY_POINT_GROUP",
    "NO_EVENT_TIME",
    "CodecError",
    "ConfigError",
    "ConfigProblem",
    "Output",
    "Postprocessor",
    "Prepared",
    "Processor",
    "ProcessorContext",
    "ProcessorError",
    "Record",
    "RecordBatch",
    "RecordProcessor",
    "Reject",
    "Result",
    "StateCodec",
    "StateView",
    "StatefulProcessor",
    "StatefulRecordProcessor",
    "accepted",
    "engine_wiring",
    "make_processor",
    "processor_context",
    "processor_error",
    "reject",
]
