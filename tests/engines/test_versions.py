"""Model versions on disk: discovery, order, the version policy."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from streamfer.engines.versions import discover, listing, select, version_key
from streamfer.errors import EngineError


def _version(root: Path, name: str, *, onnx: bool = True, card: str | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    if onnx:
        (d / "model.onnx").write_bytes(b"onnx " + name.encode())
    if card:
        (d / card).write_text("card")
    return d


def test_numbers_and_semver_order_numerically_above_names_in_lexical_order() -> None:
    ordered = ["blue", "green", "1", "2", "v3", "10", "10.1", "10.2.0-rc1", "10.2.0", "10.10"]
    shuffled = ordered[:]
    random.Random(1).shuffle(shuffled)
    assert sorted(shuffled, key=version_key) == ordered


def test_discover_lists_version_directories_oldest_first_with_cards(tmp_path: Path) -> None:
    _version(tmp_path, "10", card="model.md")
    _version(tmp_path, "9", card="card.json")
    _version(tmp_path, "11", onnx=False)
    _version(tmp_path, ".12-tmp")  # being written: hidden until renamed
    (tmp_path / "README").write_text("not a version")
    got = discover(tmp_path)
    assert [v.name for v in got] == ["9", "10", "11"]
    assert [v.card.name if v.card else None for v in got] == ["card.json", "model.md", None]
    assert [v.present for v in got] == [True, True, False]


def test_latest_serves_the_highest_version(tmp_path: Path) -> None:
    for name in ("2", "10", "9"):
        _version(tmp_path, name)
    chosen = select(tmp_path)
    assert chosen.name == "10" and chosen.onnx == tmp_path / "10" / "model.onnx"


def test_a_pinned_version_serves_even_when_newer_ones_exist(tmp_path: Path) -> None:
    for name in ("1", "2", "3"):
        _version(tmp_path, name)
    assert select(tmp_path, "2").name == "2"


def test_a_pinned_version_that_is_not_there_is_refused_naming_those_that_are(
    tmp_path: Path,
) -> None:
    _version(tmp_path, "1")
    with pytest.raises(EngineError, match=r"version '7' is not there \(got \['1'\]\)"):
        select(tmp_path, "7")


def test_an_empty_newest_version_is_refused_not_passed_over(tmp_path: Path) -> None:
    _version(tmp_path, "1")
    _version(tmp_path, "2", onnx=False)
    with pytest.raises(EngineError, match=r"version 2 has no model\.onnx"):
        select(tmp_path)


def test_an_empty_directory_has_no_versions(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no versions in this directory"):
        select(tmp_path)


def test_a_file_is_one_unnamed_version_and_cannot_be_pinned(tmp_path: Path) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"x")
    assert select(f).name is None and select(f).onnx == f
    with pytest.raises(EngineError, match="pinned, but the path is one ONNX file"):
        select(f, "2")


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no such file or directory"):
        select(tmp_path / "nope")


def test_the_listing_changes_when_a_version_appears_or_its_file_is_written(
    tmp_path: Path,
) -> None:
    _version(tmp_path, "1")
    before = listing(tmp_path)
    d = _version(tmp_path, "2", onnx=False)
    empty = listing(tmp_path)
    assert empty != before
    (d / "model.onnx").write_bytes(b"now complete")
    assert listing(tmp_path) != empty
