"""The pipeline's threads named in the operating system too.

Python names its threads for itself only: ``top -H``, ``ps -L``, ``py-spy`` and
``/proc/<pid>/task/*/comm`` see every one of them as ``python``. Each long-lived
pipeline thread calls :func:`name_this_thread` first, so a user can tell which
stream's consumer or engine thread is using the CPU (``streamfer bench server``
reports CPU per thread this way). librdkafka names its own (``rdk:...``).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

__all__ = ["OS_NAME_BYTES", "name_this_thread"]

OS_NAME_BYTES = 15  # Linux keeps the first 15 bytes of a thread's name


def name_this_thread(name: str | None = None) -> None:
    """Give the calling thread ``name`` (default: its Python name) in the OS, cut to
    :data:`OS_NAME_BYTES`; nothing happens where ``/proc`` is absent or refuses."""
    name = threading.current_thread().name if name is None else name
    comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm")
    with contextlib.suppress(OSError):
        comm.write_bytes(name.encode()[:OS_NAME_BYTES])
