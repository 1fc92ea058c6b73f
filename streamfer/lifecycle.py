"""One way to be a context manager: ``with x:`` starts ``x`` and stops it on the way out.

A class names its two methods once, in its class line, instead of writing
``__enter__``/``__exit__`` again::

    class HealthServer(Lifecycle, start="start", stop="close"): ...
    class Pipeline(Lifecycle, start="start", stop="stop", clean_flag="drain"): ...

``start=None``: nothing to do on the way in (a batch that only releases).
``clean_flag``: a keyword of the stop method that is told whether the block
ended without an exception (the pipeline drains only then). The methods are
looked up when called, so a subclass's overrides are the ones run; a subclass
that names none keeps its parent's.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["Lifecycle"]

_INHERIT: Any = object()  # a class-line keyword left out: the parent's choice stands


class Lifecycle:
    """``__enter__`` calls the start method and returns self; ``__exit__`` calls the stop method."""

    _start_method: ClassVar[str | None] = "start"
    _stop_method: ClassVar[str] = "stop"
    _clean_flag: ClassVar[str | None] = None

    def __init_subclass__(
        cls,
        *,
        start: str | None = _INHERIT,
        stop: str = _INHERIT,
        clean_flag: str | None = _INHERIT,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        start = cls._start_method if start is _INHERIT else start
        stop = cls._stop_method if stop is _INHERIT else stop
        clean_flag = cls._clean_flag if clean_flag is _INHERIT else clean_flag
        for name in (start, stop):
            if name is not None and not callable(getattr(cls, name, None)):
                raise TypeError(
                    f"{cls.__qualname__} | Lifecycle method {name!r} is not defined. "
                    "Note: expected start= and stop= to name methods of the class"
                )
        cls._start_method, cls._stop_method, cls._clean_flag = start, stop, clean_flag

    def __enter__(self) -> Self:
        if self._start_method is not None:
            getattr(self, self._start_method)()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop = getattr(self, self._stop_method)
        if self._clean_flag is None:
            stop()
        else:
            stop(**{self._clean_flag: exc_type is None})
