"""The processor contract, checked where a processor hands work back to the pipeline.

A processor's ``Prepared`` must account for every record of its batch once
(accepted, rejected, absorbed into per-key state, or dropped with a documented drop
reason) and feed the
model what it declares; otherwise a record would never resolve (its offset
never committed) or the engine would fail every batch it shares with it.
:class:`PreparedCheck` turns each such mistake into a
:class:`~streamfer.errors.ProcessorError` naming it, which the pipeline treats
like an exception raised by ``prepare``: the batch is retried record by record
and the records that still break the contract are dead-lettered. It costs a
few array operations per batch (a batch of at most 16 rows: a few list steps,
numpy's cost per call being larger there).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NoReturn

import numpy as np

from streamfer.engines.base import TensorSpec
from streamfer.errors import ProcessorError
from streamfer.pipeline.processors.base import Prepared
from streamfer.streams.reasons import DROP_REASONS
from streamfer.streams.records import RecordBatch


class PreparedCheck:
    """Checks one processor's ``Prepared`` against its batch and the model's inputs.

    ``inputs`` None: the feeds are the processor's own (it runs the model itself, through
    ``infer_with``); then only their row counts are checked.
    """

    def __init__(self, processor: str, inputs: Sequence[TensorSpec] | None) -> None:
        self.processor = processor
        self.inputs = tuple(inputs) if inputs is not None else None
        self._names = frozenset(s.name for s in self.inputs or ())

    def __call__(self, batch: RecordBatch, prepared: Prepared) -> None:
        """ProcessorError (reason ``processor_error``) naming the first rule broken."""
        if not isinstance(prepared, Prepared):
            self._fail(f"returned a {type(prepared).__name__}", "a Prepared")
        if prepared.batch is not batch:
            self._fail("returned a Prepared of another batch", "Prepared(batch, ...)")
        n = len(batch)
        rows = prepared.rows
        if not isinstance(rows, np.ndarray) or rows.ndim != 1 or rows.dtype.kind not in "iu":
            self._fail(f"returned rows {_describe(rows)}", "a 1-D integer array")
        if len(rows) and not _increasing_within(rows, n):
            self._fail(
                f"returned rows {rows.tolist()[:10]} for {n} records",
                f"increasing rows in 0..{n - 1}",
            )
        undocumented = set(prepared.dropped or ()) - set(DROP_REASONS)
        if undocumented:  # a metric label, and a drop only where a documented policy allows
            self._fail(
                f"dropped records with reason {sorted(undocumented)[0][:40]!r}",
                f"a drop reason of {sorted(DROP_REASONS)} or a reject with a reason",
            )
        self._check_cover(n, rows, prepared)
        if len(rows):
            self._check_rows(len(rows), prepared)

    def _check_cover(self, n: int, rows: np.ndarray, prepared: Prepared) -> None:
        """Every record accepted, rejected, absorbed into state or dropped, once."""
        absorbed = [] if prepared.absorbed is None else prepared.absorbed.tolist()
        dropped = [r for part in (prepared.dropped or {}).values() for r in part.tolist()]
        if len(rows) == n and not prepared.rejects and not absorbed and not dropped:
            return
        rejected = [r.row for r in prepared.rejects]
        ended = rejected + absorbed + dropped
        if len(rows) + len(ended) != n or set(ended) | set(rows.tolist()) != set(range(n)):
            self._fail(
                f"accepted {len(rows)}, rejected {len(rejected)} (rows {rejected[:10]}), "
                f"absorbed {len(absorbed)} and dropped {len(dropped)} of {n} records",
                "every record accepted, rejected, absorbed or dropped, once",
            )

    def _check_rows(self, n: int, prepared: Prepared) -> None:
        feeds = prepared.feeds
        if self.inputs is None:
            for name, arr in feeds.items():
                if not isinstance(arr, np.ndarray) or not arr.ndim or len(arr) != n:
                    self._fail(
                        f"returned feed {name!r} {_describe(arr)} for {n} accepted records",
                        f"{n} rows",
                    )
        elif feeds.keys() != self._names:
            self._fail(
                f"returned feeds {sorted(map(str, feeds))}",
                f"the model's inputs {sorted(self._names)}",
            )
        for spec in self.inputs or ():
            arr = feeds[spec.name]
            if not _fits(spec, arr, n):
                self._fail(
                    f"returned feed {spec.name!r} {_describe(arr)} for {n} accepted records",
                    f"{spec.describe()} with N = {n}",
                )
        for name in ("metas", "event_ns"):
            values = getattr(prepared, name)
            if values is not None and len(values) != n:
                self._fail(f"returned {len(values)} {name} for {n} accepted records", f"{n}")

    def _fail(self, problem: str, expected: str) -> NoReturn:
        raise ProcessorError(f"{self.processor}.prepare | {problem}. Note: expected {expected}")


def _fits(spec: TensorSpec, arr: object, n: int) -> bool:
    """``arr`` is ``n`` rows of ``spec``'s dtype and fixed dimensions."""
    if not isinstance(arr, np.ndarray) or arr.dtype != spec.dtype or arr.ndim != len(spec.shape):
        return False
    dims = zip(spec.shape[1:], arr.shape[1:], strict=True)
    return arr.shape[0] == n and all(want is None or want == got for want, got in dims)


def _increasing_within(rows: np.ndarray, n: int) -> bool:
    """``rows`` strictly increasing, in ``0..n-1`` (a short array checked without numpy,
    whose fixed cost per call would be most of the check at a poll of a few records)."""
    if len(rows) > 16:
        return bool(rows[0] >= 0 and rows[-1] < n and (np.diff(rows) > 0).all())
    r = rows.tolist()
    return r[0] >= 0 and r[-1] < n and all(a < b for a, b in pairwise(r))


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name} {list(value.shape)}"
    return f"a {type(value).__name__}"
