"""Every shell block of the documentation runs as written, and does what the page says.

The ```bash, ```sh and ```console blocks of README.md, docs/*.md and examples/*/README.md
run file by file, in the order written, in one bash process per file (so ``cd``,
variables and ``&`` jobs carry over from one block to the next), with ``set -e``, in a
fresh temporary directory (for an example's README: a copy of the example's directory,
which its page is written from), against the real broker (``$STREAMFER_BOOTSTRAP``).
A block whose first line is ``# not run by the doc test: <reason>`` is skipped, and only
those: a block that needs Docker, kubectl, a GPU, root or an install must carry the mark.

Each page's promised outcome is checked on the output: the decisions ``streamfer tail``
prints, the dead-letter reason a page names, ``streamfer_ready 1.0``.

What the environment adds, so runs never meet (the reader's broker is theirs alone): a
consumer group of the run's own (``STREAMFER__CONSUMER__GROUP_ID``), metrics on a free
port (``STREAMFER__METRICS__PORT=0``; a page's explicit ``--metrics-port`` wins), and the
topics a page lists in ``<!-- doc-test: fresh topics ... -->`` deleted before it runs
(their committed offsets go with them). Background jobs left at the end are stopped.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_blocks import NEEDS_MORE, ROOT, SKIP, blocks, doc_files, fresh_topics

# what each page promises, as the test can see it in the output
EXPECTED: dict[str, list[str]] = {
    "README.md": [
        '"stream":"payments"',  # decisions of the fraud flow, from `streamfer tail`
        '"stream":"scores"',  # decisions of your own model
        '"result":{"score":',
        '"error-reason":"missing_field"',  # the malformed record's dead letter
    ],
    "docs/configuration.md": ["fraud-2"],
    "docs/delivery.md": ["24"],
    "docs/observability.md": ["streamfer_ready 1.0"],
    "docs/security.md": ['"stream":"payments"'],
    "examples/telemetry-anomaly/README.md": [
        '"stream":"telemetry"',
        '"error-reason":"',
        "state restored from changelog",  # the baselines after kill -9
        '"z_score":',
    ],
}
TIME_LIMIT_S: dict[str, float] = {
    "README.md": 240,
    "docs/security.md": 300,
    "docs/observability.md": 120,
    "examples/telemetry-anomaly/README.md": 300,
}
DEFAULT_LIMIT_S = 90.0
# run after the page whatever happened, for what a page starts beyond background jobs
CLEANUP: dict[str, list[str]] = {
    "docs/security.md": ["streamfer broker stop --port 9192"],
}
SLOW = {"README.md", "docs/security.md", "docs/observability.md",
        "examples/telemetry-anomaly/README.md"}  # fmt: skip

_PRELUDE = """\
set -e -o pipefail
_doc_test_stop_jobs() {
    local pids
    pids=$(jobs -p)
    if [ -n "$pids" ]; then kill $pids 2>/dev/null || true; wait 2>/dev/null || true; fi
}
trap _doc_test_stop_jobs EXIT
"""


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _params() -> Iterator[object]:
    for path in doc_files():
        limit_s = TIME_LIMIT_S.get(_rel(path), DEFAULT_LIMIT_S)
        # the page's own bound, then the cleanup and stopping what it left running
        marks = [pytest.mark.integration, pytest.mark.timeout(limit_s + 180)]
        if _rel(path) in SLOW:
            marks.append(pytest.mark.slow)
        yield pytest.param(path, id=_rel(path), marks=marks)


def script(path: Path) -> str:
    """The bash script of one page: its runnable blocks, each announced on stderr."""
    parts = [_PRELUDE]
    for block in blocks(path):
        if block.skip_reason is not None:
            continue
        parts.append(f"echo '::doc-test:: block {block.where}' >&2\n")
        parts.append(block.commands)
    return "".join(parts)


def _delete_topics(bootstrap: str, topics: list[str], timeout_s: float = 60) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in topics if t in existing]
    if not doomed:
        return
    for future in admin.delete_topics(doomed, operation_timeout=30).values():
        future.result()
    deadline = time.monotonic() + timeout_s
    while set(doomed) & set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, f"topics {doomed} still exist after deletion"
        time.sleep(0.5)


def _workdir(path: Path, tmp_path: Path) -> Path:
    """A fresh directory: empty, or for an example's README a copy of the example."""
    if path.parent.parent == ROOT / "examples":
        work = tmp_path / path.parent.name
        skip = shutil.ignore_patterns("*.egg-info", "__pycache__")
        shutil.copytree(path.parent, work, ignore=skip)
        return work
    work = tmp_path / "work"
    work.mkdir()
    return work


def _run(path: Path, work: Path, env: dict[str, str], limit_s: float, out: Path) -> int | None:
    """Run the page's script; its return code, or None when it ran past ``limit_s``."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(["bash", "-c", script(path)], cwd=work, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            return proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            return None
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Whatever the page left running in its process group: TERM, then KILL."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        if proc.poll() is None:
            proc.wait(timeout=grace)


def _last_block(output: str) -> str:
    marks = [line for line in output.splitlines() if line.startswith("::doc-test:: block ")]
    return marks[-1].removeprefix("::doc-test:: block ") if marks else "(before the first block)"


@pytest.mark.parametrize("path", list(_params()))
def test_the_page_runs_as_written(path: Path, kafka_bootstrap: str, tmp_path: Path) -> None:
    name = _rel(path)
    runnable = [b for b in blocks(path) if b.skip_reason is None]
    if not runnable:
        pytest.skip(f"{name} has no block the doc test runs")
    suffix = uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update({
        "STREAMFER_BOOTSTRAP": kafka_bootstrap,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "STREAMFER__CONSUMER__GROUP_ID": f"doc-{suffix}",
        "STREAMFER__METRICS__PORT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    })  # fmt: skip
    lock = (Path(os.environ.get("TMPDIR", "/tmp")) / "streamfer-doc-test.lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)  # two runs of this test never share a page's topics
    try:
        _delete_topics(kafka_bootstrap, fresh_topics(path))
        work = _workdir(path, tmp_path)
        out = tmp_path / "output.txt"
        limit_s = TIME_LIMIT_S.get(name, DEFAULT_LIMIT_S)
        try:
            code = _run(path, work, env, limit_s, out)
        finally:
            for command in CLEANUP.get(name, []):
                subprocess.run(["bash", "-c", command], env=env, cwd=work, timeout=120,
                               capture_output=True, check=False)  # fmt: skip
        output = out.read_text(encoding="utf-8", errors="replace")
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    where = _last_block(output)
    tail = output[-4000:]
    assert code is not None, f"{name}: still running after {limit_s:g} s, in {where}\n{tail}"
    assert code == 0, f"{name}: exit {code} in the block at {where}\n{tail}"
    for expected in EXPECTED.get(name, []):
        assert expected in output, f"{name}: the output lacks {expected!r}\n{tail}"


def test_every_block_that_needs_more_than_the_test_has_is_marked() -> None:
    unmarked = [
        f"{b.where}: {m.group(0).strip()!r}"
        for path in doc_files()
        for b in blocks(path)
        if b.skip_reason is None
        for m in [NEEDS_MORE.search(b.commands)]
        if m
    ]
    assert not unmarked, (
        f"blocks the doc test cannot run, without `{SKIP} <reason>` as their first line: "
        f"{unmarked}"
    )


def test_every_mark_gives_a_reason() -> None:
    empty = [b.where for p in doc_files() for b in blocks(p) if b.skip_reason == ""]
    assert not empty, f"`{SKIP}` needs a reason after it: {empty}"


def test_every_page_with_a_promise_exists_and_runs_something() -> None:
    for name in EXPECTED:
        path = ROOT / name
        assert path in doc_files(), name
        assert any(b.skip_reason is None for b in blocks(path)), name
