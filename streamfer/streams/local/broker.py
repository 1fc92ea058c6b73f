"""A real Apache Kafka broker on loopback for the demo, the tests and CI: its process.

The broker runs as one KRaft process (broker + controller) on the machine's Java
17+, from the files :class:`~streamfer.streams.local.files.BrokerFiles` prepares
(jars from Maven Central, ``server.properties``, formatted storage, ``broker.json``
with the pid and ports of the running broker). This module starts, finds, waits for
and stops that process.

Typical use::

    broker = LocalBroker()
    bootstrap = broker.start()   # idempotent; returns once metadata answers
    ...
    broker.stop()                # leaves no process behind

Secure mode is opt-in: ``LocalBroker(sasl_ssl_port=N)`` (``streamfer broker
start --sasl-ssl``) adds a SASL_SSL listener on ``127.0.0.1:N`` beside the
PLAINTEXT one, with SCRAM-SHA-512 logins and a TLS certificate from the
project's own CA (see :mod:`streamfer.streams.local.secure`). Its user is created when
the log directory is formatted, so secure mode needs a data dir formatted with
it. ``broker.sasl_ssl`` tells clients where it is and which files to use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamfer.errors import BrokerError
from streamfer.paths import cache_dir
from streamfer.streams.admin import broker_answers
from streamfer.streams.local.files import JAVA, BrokerFiles, require_tool
from streamfer.streams.local.secure import SaslSslListener

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = cache_dir("kafka")
DEFAULT_PORT = 9092
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BrokerStatus:
    """What ``streamfer broker status`` reports."""

    running: bool
    bootstrap: str
    data_dir: Path
    pid: int | None
    log_file: Path
    sasl_ssl: SaslSslListener | None = None  # the running broker's secure listener, if any


class LocalBroker:
    """Resolves, formats, starts and stops a single-node KRaft broker.

    Nothing happens in the constructor; ``start()`` does the work.
    ``sasl_ssl_port`` (None: PLAINTEXT only) opens the secure listener too.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        data_dir: Path | None = None,
        heap_mb: int = 512,
        sasl_ssl_port: int | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port or port + 1
        self.data_dir = data_dir or cache_dir / f"data-{port}"
        self.sasl_ssl_port = sasl_ssl_port
        self.files = BrokerFiles(
            port, self.controller_port, cache_dir, self.data_dir, heap_mb, sasl_ssl_port
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl(self) -> SaslSslListener | None:
        """The secure listener this broker is asked to open, with its files; None if not asked."""
        return self.files.sasl_ssl

    def render_config(self) -> Path:
        """Write ``server.properties`` (see ``BrokerFiles.render_config``); starts nothing."""
        return self.files.render_config()

    def tool_command(self, main_class: str, *args: str) -> list[str]:
        """The command line of one of Kafka's own tools (see ``BrokerFiles.tool_command``)."""
        return self.files.tool_command(main_class, *args)

    # -- public -------------------------------------------------------------

    def start(
        self, timeout_s: float = START_TIMEOUT_S, progress: Callable[[str], None] | None = None
    ) -> str:
        """Start the broker unless it already runs; return the bootstrap address."""
        say = progress or log.info
        pid = self._running_pid()
        if pid is not None and broker_answers(self.bootstrap, timeout_s=5.0):
            self._check_running_listener()
            say(f"broker already running at {self.bootstrap} (pid {pid})")
            self._announce_listener(say)
            return self.bootstrap
        if pid is not None:
            say(f"broker pid {pid} does not answer; restarting it")
            self._kill(pid)
        ports = (self.port, self.controller_port)
        if (
            self.sasl_ssl_port is None
            and _port_in_use(self.port)
            and broker_answers(self.bootstrap, timeout_s=5.0)
        ):  # another checkout's or installation's broker: use it, leave it to its owner
            say(
                f"a Kafka broker started elsewhere already answers at {self.bootstrap}; using it "
                f"(`streamfer broker stop` here does not stop it)"
            )
            return self.bootstrap
        for busy in (*ports, *([self.sasl_ssl_port] if self.sasl_ssl_port else [])):
            if _port_in_use(busy):
                raise BrokerError(
                    f"127.0.0.1:{busy} | port already in use by another process. Note: stop "
                    f"that process or start the broker on a free port (--port N uses N and N+1"
                    f"{', and N+2 with --sasl-ssl' if self.sasl_ssl_port else ''})"
                )
        java = require_tool("java", JAVA)
        files = self.files
        files.resolve_jars(say)
        files.render_config()
        files.format_storage(java, say)
        say(f"starting Kafka broker on {self.bootstrap} (data in {self.data_dir})")
        pid = self._launch(java)
        self._wait_until_ready(pid, timeout_s)
        say(f"broker ready at {self.bootstrap} (pid {pid})")
        self._announce_listener(say)
        return self.bootstrap

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker this data dir belongs to; True if one was running."""
        pid = self._running_pid()
        if pid is None:
            self.files.state_file.unlink(missing_ok=True)
            return False
        self._kill(pid, timeout_s)
        self.files.state_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self._running_pid()
        running = pid is not None and broker_answers(self.bootstrap, timeout_s=3.0)
        secure_port = self.files.state().get("sasl_ssl_port") if running else None
        listener = self.files.listener(int(secure_port)) if secure_port else None
        log_file = self.files.log_file
        return BrokerStatus(running, self.bootstrap, self.data_dir, pid, log_file, listener)

    # -- steps --------------------------------------------------------------

    def _launch(self, java: str) -> int:
        java_cmd = self.files.java_cmd(java)
        out = (self.data_dir / "broker.out").open("wb")
        with out:
            proc = subprocess.Popen(
                [*java_cmd, "kafka.Kafka", str(self.data_dir / "server.properties")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal must not kill the broker
                cwd=self.data_dir,
            )
        self.files.write_state(proc.pid)
        return proc.pid

    def _wait_until_ready(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                self.files.state_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"{self.bootstrap} | broker process {pid} exited during start-up. "
                    f"Note: see the broker log.\n{self.files.log_tail()}"
                )
            if broker_answers(self.bootstrap, timeout_s=2.0):
                return
            time.sleep(0.5)  # poll interval while the JVM boots
        self._kill(pid)
        raise BrokerError(
            f"{self.bootstrap} | broker did not answer metadata requests within "
            f"{timeout_s:.0f} s. Note: see the broker log.\n{self.files.log_tail()}"
        )

    def _running_pid(self) -> int | None:
        pid = int(self.files.state().get("pid", 0))
        return pid if pid > 0 and _pid_alive(pid) and _is_kafka(pid) else None

    def _check_running_listener(self) -> None:
        """A running broker can serve this request only if it has the listener asked for."""
        running = self.files.state().get("sasl_ssl_port")
        if self.sasl_ssl_port is not None and running != self.sasl_ssl_port:
            has = f"SASL_SSL on 127.0.0.1:{running}" if running else "no SASL_SSL listener"
            raise BrokerError(
                f"{self.bootstrap} | broker already running with {has}, asked for SASL_SSL on "
                f"127.0.0.1:{self.sasl_ssl_port}. Note: `streamfer broker stop` it first"
            )

    def _announce_listener(self, say: Callable[[str], None]) -> None:
        secure = self.sasl_ssl
        if secure is not None:
            say(f"secure listener: {secure.describe()}")

    def _kill(self, pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            except PermissionError:
                os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.1)  # poll interval while the JVM shuts down
        raise BrokerError(f"broker pid {pid} | did not exit after SIGKILL")


def _pid_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own exited child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] != "Z":
        return True
    with contextlib.suppress(ChildProcessError):  # a zombie: reap it if it is ours
        os.waitpid(pid, os.WNOHANG)
    return False


def _is_kafka(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return b"kafka.Kafka" in cmdline


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
