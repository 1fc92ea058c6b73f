"""Workarounds for kafka-python 3.0.x behaviour, and its log noise summarised.

Four workarounds for kafka-python 3.0.x behaviour apply only to the versions
they were written for (``workaround(name)``: 3.0.x, said once in the log when
active); tests/streams/test_kafka_python_workarounds.py reproduces each
behaviour on the installed version and fails once the library no longer has it:

* ``parked-records``: a partition resumed after a pause never gets the records
  fetched for it before the pause (``KafkaPythonConsumer._unstick_parked_records``, private fields);
* ``listener-sleep``: a rebalance listener has no public way to wait without
  blocking the client's event loop, heartbeats included (``Listener.loop_sleep``,
  a private field);
* ``producer-idempotence``: a non-transactional idempotent producer turns any
  batch the broker refuses for good (a record too large, a keyless record on a
  compacted topic, no write permission) into a fatal state that fails every
  later send; such producers run without idempotence instead, one request in
  flight per connection so order holds (a retried batch may be written twice,
  which at-least-once allows);
* ``no-auto-create``: a consumer's ``allow_auto_create_topics=False`` never reaches
  its metadata requests, so a consumer would create its missing (or just deleted)
  input topic with the broker's default partition count; the flag is set on the
  consumer's cluster metadata (a private field).

The code of each lives with the client role it concerns (``consumer``, ``producer``,
``reader``); ``workaround(name)`` here says whether it applies.
"""

from __future__ import annotations

import logging
import re

import kafka

from streamfer.streams.connection import LibraryNoise

log = logging.getLogger(__name__)

WORKAROUNDS_FOR = (3, 0)  # the kafka-python release line the workarounds were written for
_WHY = {
    "parked-records": "records parked for a paused partition are handed back on resume",
    "listener-sleep": "the revocation hook waits off the event loop (heartbeats go on)",
    "no-auto-create": "consumers do not create the topics they subscribe to",
    "producer-idempotence": "non-transactional producers run without idempotence, one "
    "request in flight per connection (a refused batch would fail every later send)",
}
_said: set[str] = set()


_NOISE = LibraryNoise()


def summarise_library_logs() -> None:
    """Put the repeat summary (``LibraryNoise``) on every kafka-python logger there is.

    A filter on a logger sees only that logger's own lines, not its children's, so
    each gets it; the factory calls this again when it makes a client, for loggers of
    modules imported meanwhile.
    """
    for name, logger in list(logging.root.manager.loggerDict.items()):
        ours = name == "kafka" or name.startswith("kafka.")
        if ours and isinstance(logger, logging.Logger) and _NOISE not in logger.filters:
            logger.addFilter(_NOISE)


def installed_version() -> tuple[int, ...]:
    """The installed kafka-python's version, e.g. (3, 0, 12)."""
    return tuple(int(n) for n in re.findall(r"\d+", kafka.__version__)[:3])


def workaround(name: str) -> bool:
    """Whether workaround ``name`` (module doc) applies to the installed kafka-python;
    the first time it does, one INFO line says so."""
    active = installed_version()[:2] == WORKAROUNDS_FOR
    if active and name not in _said:
        _said.add(name)
        log.info("kafka-python %s: workaround %s active: %s", kafka.__version__, name, _WHY[name])
    return active
