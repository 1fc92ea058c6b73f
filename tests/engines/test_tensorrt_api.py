"""The TensorRT double against the real API: TensorRT 11's lean runtime, which imports
without a GPU (``tensorrt-lean-cu13-bindings`` + ``-libs``, extra `dev`).

The double is strict (``__slots__``, no catch-all attributes), so the runner
tests prove the runner uses only what the double has; this file proves the
double has only what TensorRT has, with signatures a call on the double would
also satisfy on TensorRT. Builder-only classes (``Builder``, ``OnnxParser``,
the builder config) are absent from the lean runtime: their contract is
asserted in ``test_tensorrt_builder.py``.
"""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Iterator
from typing import Any

import pytest
from fake_tensorrt import _NPTYPES, REAL_COUNTERPARTS, Script, make_fake_tensorrt

real = pytest.importorskip(
    "tensorrt_lean_bindings", reason="TensorRT lean runtime not installed (extra `dev`)"
)


def _split_top_level(text: str) -> list[str]:
    """``a: X[int, str], b: int = 1`` -> ``["a: X[int, str]", "b: int = 1"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def real_overloads(cls: type, name: str) -> Iterator[list[tuple[str, bool]]]:
    """Each pybind11 overload of ``cls.name`` as ``[(parameter, has_default), ...]`` (no self)."""
    doc = getattr(cls, name).__doc__ or ""
    for line in doc.splitlines():
        match = re.match(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> ", line.strip())
        if match:
            params = _split_top_level(match.group(1))
            yield [(p.split(":")[0].split("=")[0].strip(), "=" in p) for p in params[1:]]


def double_params(fn: Any) -> list[tuple[str, bool]]:
    sig = inspect.signature(fn)
    return [
        (p.name, p.default is not inspect.Parameter.empty)
        for p in list(sig.parameters.values())[1:]
    ]


def compatible(double: list[tuple[str, bool]], overload: list[tuple[str, bool]]) -> bool:
    """Every call the double accepts, the overload accepts: same leading names, and what
    the overload has beyond them is optional."""
    names = [n for n, _ in double]
    if names != [n for n, _ in overload[: len(names)]]:
        return False
    return all(has_default for _, has_default in overload[len(names) :])


def public_members(cls: type) -> dict[str, Any]:
    members = {}
    for klass in reversed(cls.__mro__[:-1]):  # the double's own classes, not object's
        for name, value in vars(klass).items():
            if not name.startswith("_") or name == "__init__":
                members[name] = value
    return members


# Classes streamfer constructs itself; TensorRT hands out the others (their doubles'
# constructors are the tests' business).
CONSTRUCTED = frozenset({"Runtime", "Logger"})


def _doubles() -> dict[str, type]:
    fake = make_fake_tensorrt(Script())
    return {**REAL_COUNTERPARTS, "Runtime": fake.Runtime, "Logger": fake.Logger}


def _checked(cls_name: str, double: type) -> list[str]:
    """The double's members that must exist in TensorRT: all public ones but its
    recordings (``RECORDED``), class constants and, for objects TensorRT creates,
    ``__init__``."""
    skip = {"__slots__", "RECORDED", *getattr(double, "RECORDED", ())}
    if cls_name not in CONSTRUCTED:
        skip.add("__init__")
    return [
        name
        for name, value in public_members(double).items()
        if name not in skip and not isinstance(value, str | tuple)
    ]


CASES = [
    (cls_name, member)
    for cls_name, double in _doubles().items()
    for member in _checked(cls_name, double)
]


@pytest.mark.parametrize(("cls_name", "member"), CASES)
def test_each_member_of_the_double_exists_in_tensorrt_with_a_compatible_signature(
    cls_name: str, member: str
) -> None:
    double_cls = _doubles()[cls_name]
    real_cls = getattr(real, cls_name)
    assert hasattr(real_cls, member), f"tensorrt.{cls_name} has no {member}"
    ours = inspect.getattr_static(double_cls, member)
    theirs = inspect.getattr_static(real_cls, member)
    if isinstance(ours, property | types.MemberDescriptorType):  # read as an attribute
        assert isinstance(theirs, property), f"tensorrt.{cls_name}.{member} is not a property"
        return
    if isinstance(ours, staticmethod):
        ours = ours.__func__
    overloads = list(real_overloads(real_cls, member))
    assert overloads, f"no signature found in tensorrt.{cls_name}.{member}.__doc__"
    assert any(compatible(double_params(ours), o) for o in overloads), (
        f"{cls_name}.{member}{inspect.signature(ours)} matches none of {overloads}"
    )


def test_the_enums_and_functions_the_runner_uses_exist() -> None:
    fake = make_fake_tensorrt(Script())
    assert isinstance(real.__version__, str)
    for name in vars(fake.TensorIOMode):
        assert hasattr(real.TensorIOMode, name)
    for name in _NPTYPES:
        member = getattr(real.DataType, name)
        assert real.nptype(member) == fake.nptype(name), name
    assert hasattr(real.Logger, "WARNING")
    assert hasattr(real.MemoryPoolType, "WORKSPACE")
    assert "trt_type" in (real.nptype.__doc__ or "")


def test_the_check_itself_catches_drift() -> None:
    """A renamed parameter or an extra required one is reported."""
    overload = next(real_overloads(real.IExecutionContext, "set_tensor_address"))

    class Drifted:
        def set_tensor_address(self, tensor: str, memory: int) -> bool:
            return True

    assert not compatible(double_params(Drifted.set_tensor_address), overload)
    assert compatible([("name", False), ("memory", False)], overload)
    assert not compatible([("name", False)], overload)
