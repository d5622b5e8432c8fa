"""A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) run from the jars on
Maven Central, in any directory and on any ports, so `orchard up` and each test session get their own."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import re
import shutil
import socket
import string
import struct
import subprocess
import time
import uuid
from pathlib import Path

from deploy.infra.errors import InfraError
from deploy.infra.net import LOCALHOST, ensure_port_free
from deploy.infra.paths import KAFKA_CONFIG_DIR, kafka_libs_dir
from deploy.infra.process import SupervisedServer, pid_alive, read_pid_file, spawn, write_pid_file

POM = KAFKA_CONFIG_DIR / "pom.xml"
SERVER_PROPERTIES_TEMPLATE = KAFKA_CONFIG_DIR / "server.properties"
LOG4J2_CONFIG = KAFKA_CONFIG_DIR / "log4j2.yaml"
MIN_JAVA = 17
_JARS_STAMP = ".complete"


def java_executable() -> str:
    """Path of a Java 17+ runtime, or a one-line InfraError saying what is missing."""
    java = shutil.which("java")
    if java is None:
        raise InfraError(f"Java {MIN_JAVA}+ is required: not found on PATH")
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if found is None:
        raise InfraError(f"Java {MIN_JAVA}+ is required: could not read the version of {java}")
    major = int(found.group(1))
    if major == 1 and found.group(2):  # pre-9 numbering: 1.8 is Java 8
        major = int(found.group(2))
    if major < MIN_JAVA:
        raise InfraError(f"Java {MIN_JAVA}+ is required: {java} is Java {major}")
    return java


def ensure_kafka_jars(libs_dir: Path | None = None) -> Path:
    """Gather the broker's runtime jars with Maven once; later calls return the cache at once.

    The cache is stamped with the hash of deploy/kafka/pom.xml, so a version bump refetches, and it is
    filled in a side directory and renamed, so an interrupted download never looks complete.
    """
    libs = libs_dir or kafka_libs_dir()
    wanted = hashlib.sha256(POM.read_bytes()).hexdigest()
    stamp = libs / _JARS_STAMP
    if _read_text(stamp) == wanted:
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with (libs.parent / f".{libs.name}.lock").open("w") as lock:
        # Tests and `orchard up` may start together on a fresh machine: one fetches, the other waits.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read_text(stamp) == wanted:
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise InfraError("Maven is required once to fetch the Kafka jars: mvn not found on PATH")
        partial = libs.parent / f"{libs.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log = libs.parent / "mvn.log"
        with log.open("w") as out:
            result = subprocess.run(
                [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                 f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
                stdout=out, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if result.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            raise InfraError(f"fetching the Kafka jars from Maven Central failed; see {log}")
        (partial / _JARS_STAMP).write_text(wanted)
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    return libs


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in unpadded URL-safe base64, as `StorageTool random-uuid` prints.

    Made here because a JVM start costs more than the whole format step otherwise would. Kafka's own
    generator skips ids starting with '-' (they read as command-line flags); so do we.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def live_broker_count(port: int, host: str = LOCALHOST, timeout: float = 2.0) -> int:
    """Ask the broker for cluster metadata (Metadata v4, no topics) and count the live brokers.

    A KRaft broker lists only unfenced brokers, so a count above zero means it has caught up with the
    controller and will accept topic creation and produce requests. Raises OSError when nobody answers.
    """
    client_id = b"orchard-probe"
    header = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # empty topic list, no auto-creation
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        response = _recv_exact(sock, size)
    _correlation_id, _throttle_ms, brokers = struct.unpack_from(">iii", response)
    count: int = brokers
    return count


class KafkaBroker(SupervisedServer):
    """One KRaft combined node living in `base_dir` (config, data, logs and pid file)."""

    def __init__(
        self,
        base_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        *,
        libs_dir: Path | None = None,
        heap_mb: int = 512,
        tie_to_parent: bool = False,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.libs_dir = libs_dir or kafka_libs_dir()
        self.heap_mb = heap_mb
        self.tie_to_parent = tie_to_parent
        self.data_dir = self.base_dir / "data"
        self.logs_dir = self.base_dir / "logs"
        self.config_path = self.base_dir / "server.properties"
        self.pid_file = self.base_dir / "kafka.pid"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "console.log"

    @property
    def pid(self) -> int | None:
        pid = read_pid_file(self.pid_file)
        return pid if pid_alive(pid, str(self.config_path)) else None

    def is_ready(self) -> bool:
        try:
            return live_broker_count(self.port) > 0
        except (OSError, struct.error):
            return False

    def ensure_jars(self) -> Path:
        return ensure_kafka_jars(self.libs_dir)

    def format(self) -> None:
        """Format the data dir once; an already formatted one is left as it is."""
        if (self.data_dir / "meta.properties").exists():
            return
        self._write_config()
        result = subprocess.run(
            [java_executable(), "-cp", f"{self.libs_dir}/*", "kafka.tools.StorageTool", "format",
             "-t", new_cluster_id(), "-c", str(self.config_path), "--standalone", "-g"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines() or ["?"]
            raise InfraError(f"formatting Kafka storage in {self.data_dir} failed: {detail[-1]}")

    def start(self, timeout: float = 60) -> None:
        """Start the broker unless it already runs from this directory; return once it serves metadata."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Spawn the JVM without waiting for it (lets callers start Postgres meanwhile)."""
        if self.is_running():
            return
        java = java_executable()
        ensure_port_free(self.port, "Kafka broker")
        ensure_port_free(self.controller_port, "Kafka controller")
        self.ensure_jars()
        self.format()
        self._write_config()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        heap = f"{self.heap_mb}m"
        self._process = spawn(
            [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.logs_dir}",
             f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
             "-cp", f"{self.libs_dir}/*", "kafka.Kafka", str(self.config_path)],
            log_file=self.console_log,
            cwd=self.base_dir,
            tie_to_parent=self.tie_to_parent,
        )  # fmt: skip
        write_pid_file(self.pid_file, self._process.pid)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_ready():
                return
            if not self.is_running():
                raise InfraError(f"Kafka broker exited while starting; see {self._log_to_read()}")
            time.sleep(0.1)
        raise InfraError(
            f"Kafka broker did not answer on {self.bootstrap_servers} within {timeout:.0f}s; "
            f"see {self._log_to_read()}"
        )

    def _forget_pid(self) -> None:
        self.pid_file.unlink(missing_ok=True)

    def _write_config(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        template = string.Template(SERVER_PROPERTIES_TEMPLATE.read_text())
        self.config_path.write_text(
            template.substitute(port=self.port, controller_port=self.controller_port, log_dirs=self.data_dir)
        )

    def _log_to_read(self) -> Path:
        # JVM-level failures (bad flags, missing classes) never reach log4j's file.
        return self.log_file if self.log_file.exists() else self.console_log
