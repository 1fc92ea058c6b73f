"""scripts/setup.sh: installs Java 17+ and Maven itself when it may, says what to install when
it may not, and prints nothing but its own progress lines. Run on stub commands, so nothing is
installed for real."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"
PACKAGES = "default-jre-headless maven"


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def java_stub(version: str) -> str:
    return f"echo 'openjdk version \"{version}\" 2024-01-16' >&2"


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A copy of the script in an empty checkout with a stub .venv, and a bin dir with only
    the basic tools (no java, no mvn, no apt-get)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SETUP, repo / "scripts" / "setup.sh")
    (repo / ".venv" / "bin").mkdir(parents=True)
    stub(repo / ".venv" / "bin", "python", f'echo "$*" >> {tmp_path}/pip.log')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "sed", "head", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return tmp_path


def setup(box: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run([bash, str(box / "repo" / "scripts" / "setup.sh"), "dev"],
                          env={"PATH": str(box / "bin")}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def only_progress_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("setup: ") for line in lines), done.stderr
    return lines


def test_as_root_it_installs_java_and_maven_with_apt_then_the_package(box: Path) -> None:
    bin_dir = box / "bin"
    stub(bin_dir, "id", "echo 0")
    pending = box / "pending"  # what the stub apt-get "installs"
    pending.mkdir()
    stub(pending, "java", java_stub("17.0.9"))
    stub(pending, "mvn", "")
    cp = shutil.which("cp")
    stub(bin_dir, "apt-get", (
        f'echo "$*" >> {box}/apt.log; echo "lots of apt output"\n'
        f'if [ "$1" = install ]; then {cp} -p {pending}/java {pending}/mvn {bin_dir}/; fi'
    ))  # fmt: skip
    done = setup(box)
    assert done.returncode == 0, done.stderr
    lines = only_progress_lines(done)  # no apt, no pip output
    assert lines[0] == f"setup: installing Java 17+ and Maven ({PACKAGES}) with apt-get"
    assert (box / "apt.log").read_text().splitlines() == [
        "update", f"install -y --no-install-recommends {PACKAGES}"
    ]
    pip = (box / "pip.log").read_text().splitlines()
    assert pip and all("-m pip --quiet --disable-pip-version-check install" in c for c in pip)
    assert any("--editable .[dev]" in c for c in pip)


@pytest.mark.parametrize("java", [None, "11.0.2", "1.8.0_392"])
def test_not_root_and_missing_it_names_the_packages_and_fails(
    box: Path, java: str | None
) -> None:
    stub(box / "bin", "id", "echo 1000")
    stub(box / "bin", "mvn", "")
    if java:
        stub(box / "bin", "java", java_stub(java))
    done = setup(box)
    assert done.returncode == 1
    text = "\n".join(only_progress_lines(done))
    assert "needs Java 17+ and Maven" in text
    assert f"apt-get install -y --no-install-recommends {PACKAGES}" in text
    assert not (box / "pip.log").exists()  # nothing installed


def test_with_java_17_and_maven_it_installs_nothing_else(box: Path) -> None:
    stub(box / "bin", "id", "echo 0")
    stub(box / "bin", "apt-get", f'echo "$*" >> {box}/apt.log')
    stub(box / "bin", "java", java_stub("21.0.1"))
    stub(box / "bin", "mvn", "")
    done = setup(box)
    assert done.returncode == 0, done.stderr
    only_progress_lines(done)
    assert not (box / "apt.log").exists()


def test_a_failing_step_shows_its_output(box: Path) -> None:
    stub(box / "bin", "java", java_stub("17.0.1"))
    stub(box / "bin", "mvn", "")
    stub(box / "repo" / ".venv" / "bin", "python", "echo 'ERROR: no such package' >&2; exit 1")
    done = setup(box)
    assert done.returncode == 1
    assert "ERROR: no such package" in done.stderr and "setup: failed: " in done.stderr
