"""The files a local broker runs from: its jars, its configuration and its storage.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml``
(resolved once into ``<cache dir>/lib``). The data directory holds the rendered
``server.properties`` (and, in secure mode, the TLS and SASL files), the KRaft log
dirs (formatted once), ``broker.log``, ``broker.out`` and ``broker.json`` (pid and
ports of the running broker). Nothing here starts a process but the one-off tools
(Maven, the KRaft storage formatter); ``streamfer.streams.local.broker`` runs the broker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import string
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from streamfer.errors import BrokerError
from streamfer.paths import shipped
from streamfer.streams.local.secure import (
    SECURE_DIR_NAME,
    SaslSslListener,
    create_password,
    ensure_tls_material,
    scram_format_argument,
)

log = logging.getLogger(__name__)

KAFKA_DEPLOY_DIR = shipped("kafka")
JAVA = "a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"


class BrokerFiles:
    """Jars, ``server.properties``, KRaft storage and the state file of one local broker."""

    def __init__(
        self,
        port: int,
        controller_port: int,
        cache_dir: Path,
        data_dir: Path,
        heap_mb: int,
        sasl_ssl_port: int | None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port
        self.lib_dir = cache_dir / "lib"
        self.data_dir = data_dir
        self.heap_mb = heap_mb
        self.sasl_ssl_port = sasl_ssl_port

    @property
    def sasl_ssl(self) -> SaslSslListener | None:
        """The secure listener this broker is asked to open, with its files; None if not asked."""
        if self.sasl_ssl_port is None:
            return None
        return self.listener(self.sasl_ssl_port)

    def listener(self, port: int) -> SaslSslListener:
        return SaslSslListener(f"127.0.0.1:{port}", self.data_dir / SECURE_DIR_NAME)

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "broker.json"

    def tool_command(self, main_class: str, *args: str) -> list[str]:
        """The command line of one of Kafka's own tools, such as
        ``org.apache.kafka.tools.ConsoleProducer``, on the broker's jars (resolved first if
        needed; ``deploy/kafka/pom.xml`` brings ``kafka-tools``). It starts nothing."""
        java = require_tool("java", JAVA)
        self.resolve_jars(log.info)
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

    def state(self) -> dict[str, int]:
        """What ``broker.json`` says about the broker started from this data dir."""
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def write_state(self, pid: int) -> None:
        """Record the started broker's pid and ports in ``broker.json``."""
        state: dict[str, int] = {
            "pid": pid,
            "port": self.port,
            "controller_port": self.controller_port,
        }
        if self.sasl_ssl_port is not None:
            state["sasl_ssl_port"] = self.sasl_ssl_port
        self.state_file.write_text(json.dumps(state))

    def resolve_jars(self, say: Callable[[str], None]) -> None:
        marker = self.lib_dir / ".resolved"
        pom = KAFKA_DEPLOY_DIR / "pom.xml"
        if marker.exists() and marker.read_text() == _file_digest(pom):
            return
        mvn = require_tool("mvn", "Apache Maven 3.8+ (Debian: apt-get install maven)")
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

    def format_storage(self, java: str, say: Callable[[str], None]) -> None:
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
            *self.java_cmd(java),
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

    def java_cmd(self, java: str) -> list[str]:
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


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding.

    Never one starting with "-": the storage tool would read it as an option and fail
    with its usage text (one id in 64), as Kafka's own Uuid.randomUuid avoids too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"{name} | not found on PATH. Note: the local broker needs {what}")
    return path


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
