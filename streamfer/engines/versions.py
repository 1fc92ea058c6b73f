"""Model versions on disk: which are there, in what order, and which one a policy picks.

A model's ``path`` names either one ONNX file (one unnamed version, its name read from
the file's ``streamfer.version`` metadata) or a directory of versions::

    models/fraud/
      1/model.onnx
      2/model.onnx
      2/model.md          (optional model card: model.md or card.json)
      2.1.0/model.onnx

Every sub-directory is a version, named by the directory (hidden ones, starting with
``.``, are skipped: write a new version as ``.3-tmp`` and rename it to ``3``, so no
half-written file is ever seen). A version directory without ``model.onnx`` is still
listed, so that a policy picking it is refused with a reason instead of silently
falling back to an older one.

Order (``version: latest`` serves the last): names that read as numbers or
semver-like (``7``, ``v2``, ``1.10.0``, ``2.0.0-rc1``) compare numerically, part by
part, and a pre-release (anything after ``-`` or ``+``) ranks below the same numbers
without one; they all rank above names that are not numbers, which compare
lexically among themselves. So ``2 < 10 < 10.1``, ``1.0.0-rc1 < 1.0.0``,
``blue < green < 1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streamfer.errors import EngineError

LATEST = "latest"
MODEL_FILE = "model.onnx"
CARD_FILES = ("model.md", "card.json")
_NUMERIC = re.compile(r"^[vV]?(\d+(?:\.\d+)*)([-+].*)?$")


@dataclass(frozen=True)
class ModelVersion:
    """One version of a model: its name (None for a bare file), its ONNX file and card."""

    name: str | None
    onnx: Path
    card: Path | None = None

    @property
    def present(self) -> bool:
        """The version's ONNX file is there (an empty version directory is not)."""
        return self.onnx.is_file()

    def signature(self) -> tuple[str | None, int, int]:
        """Name, size and mtime of its file: changes when the file is rewritten."""
        try:
            st = self.onnx.stat()
        except OSError:
            return (self.name, -1, -1)
        return (self.name, st.st_size, st.st_mtime_ns)

    def label(self, fallback: str = "") -> str:
        """The version as decisions and metrics name it (a bare file: ``fallback``)."""
        return self.name if self.name is not None else fallback


def version_key(name: str) -> tuple[int, tuple[int, ...], int, str]:
    """Sort key: numbers/semver-like by their parts (pre-releases first), above other
    names in lexical order (see the module docstring)."""
    m = _NUMERIC.match(name)
    if m is None:
        return (0, (), 0, name)
    parts = tuple(int(p) for p in m.group(1).split("."))
    return (1, parts, 0 if m.group(2) else 1, name)


def is_versioned(path: Path) -> bool:
    """``path`` is a directory of versions (not one ONNX file)."""
    return path.is_dir()


def discover(path: Path) -> list[ModelVersion]:
    """The versions at ``path``, oldest first (a file: itself, unnamed).

    EngineError when ``path`` is neither a file nor a directory.
    """
    if path.is_file():
        return [ModelVersion(None, path)]
    if not path.is_dir():
        raise EngineError(
            f"{path} | no such file or directory. Note: expected an ONNX file or a "
            f"directory of versions (<dir>/<version>/{MODEL_FILE})"
        )
    found = []
    for child in path.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        card = next((child / c for c in CARD_FILES if (child / c).is_file()), None)
        found.append(ModelVersion(child.name, child / MODEL_FILE, card))
    return sorted(found, key=lambda v: version_key(v.name or ""))


def select(path: Path, policy: str = LATEST) -> ModelVersion:
    """The version ``policy`` serves: ``latest`` (the last in order) or a pinned name.

    EngineError naming what is there when nothing fits, or when the chosen version's
    directory holds no ``model.onnx`` (an empty or half-written version is refused,
    never passed over for an older one).
    """
    versions = discover(path)
    if len(versions) == 1 and versions[0].name is None:
        if policy != LATEST:
            raise EngineError(
                f"{path} | version {policy!r} pinned, but the path is one ONNX file. "
                f"Note: expected a directory of versions (<dir>/<version>/{MODEL_FILE}) "
                "or version: latest"
            )
        return versions[0]
    names = [v.name for v in versions]
    if not versions:
        raise EngineError(
            f"{path} | no versions in this directory. "
            f"Note: expected sub-directories <version>/{MODEL_FILE}"
        )
    if policy == LATEST:
        chosen = versions[-1]
    else:
        match = [v for v in versions if v.name == policy]
        if not match:
            raise EngineError(
                f"{path} | version {policy!r} is not there (got {names}). "
                "Note: expected a version directory's name, or latest"
            )
        chosen = match[0]
    if not chosen.present:
        raise EngineError(
            f"{chosen.onnx.parent} | version {chosen.name} has no {MODEL_FILE} (empty or "
            f"not fully written). Note: expected <dir>/<version>/{MODEL_FILE}; write a new "
            "version under a hidden name (.tmp-3) and rename it when complete"
        )
    return chosen


def listing(path: Path) -> tuple[tuple[str | None, int, int], ...]:
    """What a poll compares: every version's name, size and mtime (empty if unreadable)."""
    try:
        return tuple(v.signature() for v in discover(path))
    except (EngineError, OSError):
        return ()
