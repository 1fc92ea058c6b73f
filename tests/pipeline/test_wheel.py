"""The wheel, as a user installs it: built from this checkout, installed into a new virtual
environment, run from an empty directory. Its commands must find everything they read at run
time inside the installed package (Kafka POM and broker configs, shipped configs, models) and
keep broker data and caches in the user's cache directory, never in site-packages or the
current directory.

The Kafka jars come from Maven's local repository, filled when the checkout's broker was first
resolved, so this test does not download Kafka a second time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import assert_demo_summary_resolves_every_record

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a new virtual environment with the wheel of this checkout installed."""
    work = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
          str(ROOT)], work, env, 600)  # fmt: skip
    wheels = list((work / "dist").glob("streamfer-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], work, env, 120)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])],
         work, env, 900)  # fmt: skip
    return venv / "bin"


def test_the_wheel_claims_one_top_level_package_and_ships_its_data(installed: Path) -> None:
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    python = str(installed / "python")
    site = Path(subprocess.check_output([python, "-c", where], text=True).strip())
    assert site != Path(sysconfig.get_path("purelib"))
    record = next(site.glob("streamfer-*.dist-info")) / "top_level.txt"
    assert record.read_text().split() == ["streamfer"]
    for name in ("pipeline", "engines", "streams", "models", "bench"):
        assert not (site / name).exists(), f"{name} installed as a top-level package"
    shipped = site / "streamfer"
    for part in ("kafka/pom.xml", "kafka/server.properties",
                 "configs/fraud.yaml", "configs/demo.yaml", "models/fraud.onnx",
                 "models/camera.onnx", "models/sensor.onnx"):  # fmt: skip
        assert (shipped / part).is_file(), part


def test_broker_demo_and_validate_work_from_an_empty_directory(
    installed: Path, tmp_path: Path, free_ports: Callable[[int], int]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    cache = tmp_path / "xdg-cache"
    env = {k: v for k, v in os.environ.items() if k not in ("STREAMFER_BOOTSTRAP", "PYTHONPATH")}
    env.update(XDG_CACHE_HOME=str(cache), PATH=f"{installed}{os.pathsep}{env['PATH']}")
    streamfer = str(installed / "streamfer")
    port = free_ports(2)

    out = _run([streamfer, "validate", "-c", "fraud"], empty, env, 120)
    assert "OK" in out
    _run([streamfer, "broker", "start", "--port", str(port)], empty, env, 300)
    try:
        status = _run([streamfer, "broker", "status", "--port", str(port)], empty, env, 60)
        assert str(cache / "streamfer" / "kafka") in status, status
        metrics_port = free_ports(1)
        out = _run(
            [streamfer, "demo", "--duration", "10", "--bootstrap", f"127.0.0.1:{port}",
             "--metrics-port", str(metrics_port), "--no-live", "--out", str(tmp_path / "out")],
            empty, env, 420,
        )  # fmt: skip
        assert_demo_summary_resolves_every_record(out)
        assert "Warning" not in out, out[-3000:]  # setup and demo start print no warnings
    finally:
        _run([streamfer, "broker", "stop", "--port", str(port)], empty, env, 120)
    # nothing written where the user stood
    assert list(empty.iterdir()) == []
