"""A real Apache Kafka broker on loopback for the demo, the tests and CI.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml``
(resolved once into ``.cache/kafka/lib``); the broker runs as one KRaft
process (broker + controller) on the machine's Java 17+. State lives in a data
directory: the rendered ``server.properties``, the log dirs, ``broker.log``,
``broker.out`` and ``broker.json`` (pid and ports of the running broker).

Typical use::

    broker = LocalBroker()
    bootstrap = broker.start()   # idempotent; returns once metadata answers
    ...
    broker.stop()                # leaves no process behind

Secure mode is opt-in: ``LocalBroker(sasl_ssl_port=N)`` (``streamfer broker
start --sasl-ssl``) adds a SASL_SSL listener on ``127.0.0.1:N`` beside the
PLAINTEXT one, with SCRAM-SHA-512 logins and a TLS certificate from the
project's own CA (see :mod:`streamfer.streams.broker_secure`). Its user is created when
the log directory is formatted, so secure mode needs a data dir formatted with
it. ``broker.sasl_ssl`` tells clients where it is and which files to use.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamfer.errors import BrokerError
from streamfer.paths import cache_dir, shipped
from streamfer.streams.admin import broker_answers
from streamfer.streams.broker_secure import (
    SECURE_DIR_NAME,
    SaslSslListener,
    create_password,
    ensure_tls_material,
    scram_format_argument,
)

log = logging.getLogger(__name__)

KAFKA_DEPLOY_DIR = shipped("kafka")
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
        self.cache_dir = cache_dir
        self.lib_dir = cache_dir / "lib"
        self.data_dir = data_dir or cache_dir / f"data-{port}"
        self.heap_mb = heap_mb
        self.sasl_ssl_port = sasl_ssl_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl(self) -> SaslSslListener | None:
        """The secure listener this broker is asked to open, with its files; None if not asked."""
        if self.sasl_ssl_port is None:
            return None
        return self._listener(self.sasl_ssl_port)

    def _listener(self, port: int) -> SaslSslListener:
        return SaslSslListener(f"127.0.0.1:{port}", self.data_dir / SECURE_DIR_NAME)

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "broker.json"

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
        java = _require_tool(
            "java", "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
        )
        self._resolve_jars(say)
        self.render_config()
        self._format_storage(java, say)
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
            self._state_file.unlink(missing_ok=True)
            return False
        self._kill(pid, timeout_s)
        self._state_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self._running_pid()
        running = pid is not None and broker_answers(self.bootstrap, timeout_s=3.0)
        secure_port = self._state().get("sasl_ssl_port") if running else None
        listener = self._listener(int(secure_port)) if secure_port else None
        return BrokerStatus(running, self.bootstrap, self.data_dir, pid, self.log_file, listener)

    def tool_command(self, main_class: str, *args: str) -> list[str]:
        """The command line of one of Kafka's own tools, such as
        ``org.apache.kafka.tools.ConsoleProducer``, on the broker's jars (resolved first if
        needed; ``deploy/kafka/pom.xml`` brings ``kafka-tools``). It starts nothing."""
        java = _require_tool(
            "java", "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
        )
        self._resolve_jars(log.info)
        return [
            java,
            "-Xmx256m",
            "-cp",
            f"{self.lib_dir}/*",
            main_class,
            *args,
        ]

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in (self.data_dir / "broker.out", self.log_file):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(chunks) or "(no broker log yet)"

    # -- steps --------------------------------------------------------------

    def _resolve_jars(self, say: Callable[[str], None]) -> None:
        marker = self.lib_dir / ".resolved"
        pom = KAFKA_DEPLOY_DIR / "pom.xml"
        if marker.exists() and marker.read_text() == _file_digest(pom):
            return
        mvn = _require_tool("mvn", "Apache Maven 3.8+ (Debian: apt-get install maven)")
        say("resolving Apache Kafka from Maven Central (first start only)...")
        if self.lib_dir.exists():
            shutil.rmtree(self.lib_dir)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.lib_dir}",
            "-DincludeScope=runtime",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(
                f"{pom} | Maven could not resolve the Kafka jars (exit {done.returncode}). "
                f"Note: Maven Central must be reachable.\n{(done.stdout + done.stderr)[-2000:]}"
            )
        marker.write_text(_file_digest(pom))

    def render_config(self) -> Path:
        """Write ``server.properties`` into the data dir (and, for SASL_SSL, the TLS files).

        ``start()`` calls it; it starts nothing. Without ``sasl_ssl_port`` the file
        has only the PLAINTEXT and CONTROLLER listeners.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        plain = f"PLAINTEXT://127.0.0.1:{self.port}"
        listeners = f"{plain},CONTROLLER://127.0.0.1:{self.controller_port}"
        advertised, protocols = plain, "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        secure = self.sasl_ssl
        if secure is not None:
            listeners += f",SASL_SSL://{secure.bootstrap}"
            advertised += f",SASL_SSL://{secure.bootstrap}"
            protocols += ",SASL_SSL:SASL_SSL"
        template = string.Template((KAFKA_DEPLOY_DIR / "server.properties").read_text())
        rendered = template.substitute(
            port=self.port,
            controller_port=self.controller_port,
            listeners=listeners,
            advertised_listeners=advertised,
            protocol_map=protocols,
            log_dir=self.data_dir / "logs",
        )
        if secure is not None:
            ensure_tls_material(secure)
            extra = string.Template((KAFKA_DEPLOY_DIR / "sasl-ssl.properties").read_text())
            rendered += extra.substitute(keystore=secure.keystore_file)
        path = self.data_dir / "server.properties"
        path.write_text(rendered)
        return path

    def _format_storage(self, java: str, say: Callable[[str], None]) -> None:
        secure = self.sasl_ssl
        if (self.data_dir / "logs" / "meta.properties").exists():
            if secure is not None and not secure.password_file.is_file():
                raise BrokerError(
                    f"{self.data_dir} | formatted without the SASL_SSL user "
                    f"({secure.password_file} missing). Note: the SCRAM user is created when the "
                    "log directory is formatted; start with --sasl-ssl on a new --data-dir"
                )
            return
        say("formatting KRaft storage (first start only)")
        cluster_id = new_cluster_id()
        cmd = [
            *self._java_cmd(java),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.data_dir / "server.properties"),
        ]
        if secure is not None:
            say(f"creating SASL user {secure.username!r} ({secure.mechanism})")
            cmd += ["--add-scram", scram_format_argument(create_password(secure), secure.username)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(
                f"{self.data_dir} | formatting the KRaft log directory failed "
                f"(exit {done.returncode}).\n{(done.stdout + done.stderr)[-2000:]}"
            )

    def _java_cmd(self, java: str) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap_mb}m",
            f"-Xms{min(self.heap_mb, 256)}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.data_dir}",
            f"-Dlog4j2.configurationFile={KAFKA_DEPLOY_DIR / 'log4j2.properties'}",
            "-cp",
            f"{self.lib_dir}/*",
        ]

    def _launch(self, java: str) -> int:
        out = (self.data_dir / "broker.out").open("wb")
        with out:
            proc = subprocess.Popen(
                [*self._java_cmd(java), "kafka.Kafka", str(self.data_dir / "server.properties")],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal must not kill the broker
                cwd=self.data_dir,
            )
        state: dict[str, int] = {
            "pid": proc.pid,
            "port": self.port,
            "controller_port": self.controller_port,
        }
        if self.sasl_ssl_port is not None:
            state["sasl_ssl_port"] = self.sasl_ssl_port
        self._state_file.write_text(json.dumps(state))
        return proc.pid

    def _wait_until_ready(self, pid: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                self._state_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"{self.bootstrap} | broker process {pid} exited during start-up. "
                    f"Note: see the broker log.\n{self.log_tail()}"
                )
            if broker_answers(self.bootstrap, timeout_s=2.0):
                return
            time.sleep(0.5)  # poll interval while the JVM boots
        self._kill(pid)
        raise BrokerError(
            f"{self.bootstrap} | broker did not answer metadata requests within "
            f"{timeout_s:.0f} s. Note: see the broker log.\n{self.log_tail()}"
        )

    def _state(self) -> dict[str, int]:
        """What ``broker.json`` says about the broker started from this data dir."""
        try:
            state = json.loads(self._state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _running_pid(self) -> int | None:
        pid = int(self._state().get("pid", 0))
        return pid if pid > 0 and _pid_alive(pid) and _is_kafka(pid) else None

    def _check_running_listener(self) -> None:
        """A running broker can serve this request only if it has the listener asked for."""
        running = self._state().get("sasl_ssl_port")
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


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding.

    Never one starting with "-": the storage tool would read it as an option and fail
    with its usage text (one id in 64), as Kafka's own Uuid.randomUuid avoids too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"{name} | not found on PATH. Note: the local broker needs {what}")
    return path


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
