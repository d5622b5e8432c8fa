"""A real single-node Apache Kafka broker (KRaft, broker + controller in one JVM) run from the jars on
Maven Central, in any directory and on any ports, so `orchard up` and each test session get their own."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import re
import shutil
import socket
import string
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.infra.errors import InfraError
from deploy.infra.net import LOCALHOST, ensure_port_free
from deploy.infra.paths import KAFKA_CONFIG_DIR, kafka_libs_dir
from deploy.infra.process import (
    SupervisedServer,
    pid_alive,
    read_pid_file,
    run_setup,
    spawn,
    write_pid_file,
)
from deploy.infra.tls import ServerTls

log = logging.getLogger(__name__)

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


# What the broker's own log says while it starts. After an unclean stop (kill -9, power loss) it rescans
# every partition's unflushed segments before it registers, which under load takes far longer than a
# clean start: these lines tell a slow start that is getting on from one that is stuck.
_JVM_STARTED = "Registered `kafka:type=kafka.Log4jController` MBean"
_STARTUP_EVENTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Transition from SHUTDOWN to STARTING"), "starting"),
    (re.compile(r"Recovering (?P<total>\d+) logs from .* no clean shutdown"), "unclean"),
    (re.compile(r"Loading logs from log dirs"), "loading"),
    (re.compile(r"Completed load of Log.*\((?P<done>\d+)/(?P<total>\d+) completed in"), "loaded"),
    (re.compile(r"Recovering unflushed segment"), "segment"),
    (re.compile(r"Loaded (?P<done>\d+) logs in"), "all-loaded"),
    (re.compile(r"Successfully registered broker"), "registered"),
    (re.compile(r"Transitioning from STARTING to RECOVERY"), "caught-up"),
    (re.compile(r"Transitioning from RECOVERY to RUNNING"), "unfenced"),
)


@dataclass
class StartupProgress:
    """How far a starting broker has got, as read from its server.log since it was launched.

    Log loading runs beside the broker's registration with the controller, so their lines interleave:
    each milestone is kept on its own and the phase is derived from all of them.
    """

    seen: set[str] = field(default_factory=set)
    logs_done: int = 0
    logs_total: int = 0
    segments_recovered: int = 0
    events: int = 0
    """Startup lines seen so far: while this grows the broker is getting on, however slowly."""

    @property
    def unclean(self) -> bool:
        return "unclean" in self.seen

    def apply(self, line: str) -> None:
        for pattern, kind in _STARTUP_EVENTS:
            found = pattern.search(line)
            if found is None:
                continue
            self.events += 1
            self.seen.add(kind)
            groups = found.groupdict()
            if "total" in groups:
                self.logs_total = int(groups["total"])
            if "done" in groups:
                self.logs_done = int(groups["done"])
            if kind == "all-loaded":
                self.logs_total = self.logs_done
            if kind == "segment":
                self.segments_recovered += 1
            return

    @property
    def phase(self) -> str:
        loading = "loading" in self.seen and "all-loaded" not in self.seen
        for done, phase in (
            ("unfenced", "running"),
            ("caught-up", "waiting to be unfenced"),
            (loading, "recovering logs" if self.unclean else "loading logs"),
            ("all-loaded", "waiting for the controller"),
            ("registered", "waiting for the logs"),
            ("starting", "starting the broker"),
        ):
            if done is True or done in self.seen:
                return phase
        return "starting the JVM"

    def line(self) -> str:
        phase = self.phase
        if phase in ("recovering logs", "loading logs") and self.logs_total:
            return f"{phase} — {self.logs_done}/{self.logs_total} partitions"
        return phase


class _StartupLog:
    """Follows server.log from a starting point, feeding each new complete line to a StartupProgress."""

    def __init__(self, path: Path, offset: int | None) -> None:
        self.path = path
        self.progress = StartupProgress()
        # No offset: the broker was started by someone else (an earlier `orchard up`); its current
        # run begins at the last JVM start in the file.
        self._offset = offset if offset is not None else self._last_jvm_start()
        self._partial = ""

    def _last_jvm_start(self) -> int:
        try:
            data = self.path.read_bytes()
        except OSError:
            return 0
        return max(data.rfind(_JVM_STARTED.encode()), 0)

    def poll(self) -> StartupProgress:
        try:
            size = self.path.stat().st_size
            if size < self._offset:  # rolled over to server.log.1: the new file holds the newest lines
                self._offset, self._partial = 0, ""
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except OSError:
            return self.progress
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk.decode(errors="replace")).split("\n")
        for line in lines:
            self.progress.apply(line)
        return self.progress


@dataclass(frozen=True)
class BrokerSecurity:
    """A SASL_SSL listener beside the loopback PLAINTEXT one, with SCRAM-SHA-512 users and ACLs enforced.

    The PLAINTEXT and controller listeners stay on 127.0.0.1 for the node's own traffic and for setup
    (their anonymous principal is a super user, like `admin`); clients that should be held to their
    ACLs connect to `sasl_port` with TLS and a SCRAM user.
    """

    sasl_port: int
    tls: ServerTls
    users: Mapping[str, str]
    """SCRAM-SHA-512 user name -> password, created when the storage is formatted."""
    super_users: tuple[str, ...] = ("admin",)

    def properties(self, port: int, controller_port: int) -> str:
        listeners = (
            f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{self.sasl_port},"
            f"CONTROLLER://127.0.0.1:{controller_port}"
        )
        supers = ";".join(["User:ANONYMOUS", *(f"User:{name}" for name in self.super_users)])
        prefix = "listener.name.sasl_ssl"
        return "\n".join([
            "", "# Secured listener (deploy.infra.kafka.BrokerSecurity); later keys override the ones above.",
            f"listeners={listeners}",
            f"advertised.listeners={listeners}",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"{prefix}.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"{prefix}.ssl.keystore.type=PKCS12",
            f"{prefix}.ssl.keystore.location={self.tls.keystore}",
            f"{prefix}.ssl.keystore.password={self.tls.keystore_password}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users={supers}",
            "allow.everyone.if.no.acl.found=false",
            "",
        ])  # fmt: skip

    def scram_arguments(self) -> list[str]:
        arguments = []
        for name, password in self.users.items():
            arguments += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return arguments


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
        security: BrokerSecurity | None = None,
    ) -> None:
        self.security = security
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
        self._log_offset: int | None = None

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
        run_setup(
            [java_executable(), "-cp", f"{self.libs_dir}/*", "kafka.tools.StorageTool", "format",
             "-t", new_cluster_id(), "-c", str(self.config_path), "--standalone", "-g",
             *(self.security.scram_arguments() if self.security else [])],
            f"formatting Kafka storage in {self.data_dir}",
        )  # fmt: skip

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
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
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

    def startup_log(self) -> _StartupLog:
        """A follower of this run's broker log (from the last launch, or the last JVM start in it)."""
        return _StartupLog(self.log_file, self._log_offset)

    def wait_ready(
        self,
        timeout: float = 60,
        on_progress: Callable[[str], None] | None = None,
        report_every: float = 5.0,
    ) -> None:
        """Return once the broker serves metadata.

        `timeout` counts from the last sign of progress in the broker's log, not from the call: after a
        kill -9 the broker rescans its logs before it registers, which on a busy machine can take
        minutes, and that is worth waiting for, while a broker stuck for `timeout` seconds is not.
        While it recovers, `on_progress` gets a line such as "recovering logs — 41/96 partitions, 12 s"
        every `report_every` seconds (and at each new phase).
        """
        startup = self.startup_log()
        began = last_progress = last_report = time.monotonic()
        seen, reported = 0, ""
        while not self.is_ready():
            if not self.is_running():
                raise InfraError(f"Kafka broker exited while starting; see {self._log_to_read()}")
            progress, now = startup.poll(), time.monotonic()
            if progress.events > seen:
                seen, last_progress = progress.events, now
            if now - last_progress > timeout:
                raise InfraError(
                    f"Kafka broker did not answer on {self.bootstrap_servers} and made no progress for "
                    f"{timeout:.0f}s (last: {progress.line()}); see {self._log_to_read()}"
                )
            if progress.unclean and (progress.phase != reported or now - last_report >= report_every):
                reported, last_report = progress.phase, now
                message = f"{progress.line()}, {now - began:.0f} s"
                log.info("kafka: %s", message)
                if on_progress is not None:
                    on_progress(message)
            time.sleep(0.1)

    def _forget_pid(self) -> None:
        self.pid_file.unlink(missing_ok=True)

    def _write_config(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        template = string.Template(SERVER_PROPERTIES_TEMPLATE.read_text())
        properties = template.substitute(
            port=self.port, controller_port=self.controller_port, log_dirs=self.data_dir
        )
        if self.security is not None:
            properties += self.security.properties(self.port, self.controller_port)
        self.config_path.write_text(properties)

    def _log_to_read(self) -> Path:
        # JVM-level failures (bad flags, missing classes) never reach log4j's file.
        return self.log_file if self.log_file.exists() else self.console_log
