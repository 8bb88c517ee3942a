"""A single-node Kafka broker (KRaft, broker and controller in one JVM) run from jars.

No package registry ships a Kafka broker, so deploy/kafka/pom.xml brings the jars from
Maven Central and this module renders the configs into the state folder, formats the
storage once and supervises the JVM by PID, so the broker outlives the command that
started it and any later command can stop it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from schemas.settings import DEFAULT_KAFKA_CONTROLLER_PORT, DEFAULT_KAFKA_PORT
from turnstile_cli.stack.paths import DEPLOY_DIR, render_template, write_if_changed
from turnstile_cli.stack.process import (
    StackError,
    pid_alive,
    pid_matches,
    read_pid,
    stop_pid,
    tail,
    tcp_listening,
    wait_ports_closed,
)

KAFKA_DEPLOY_DIR = DEPLOY_DIR / "kafka"
LIB_DIR = KAFKA_DEPLOY_DIR / "lib"
POM = KAFKA_DEPLOY_DIR / "pom.xml"
_JAR_STAMP = ".pom.sha256"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MAIN_CLASS = "kafka.Kafka"
_log = logging.getLogger(__name__)


def ensure_jars(lib_dir: Path = LIB_DIR, pom: Path = POM) -> Path:
    """Copy the broker's jars from Maven Central into ``lib_dir`` unless already there.

    A file lock keeps concurrent test sessions from fetching twice; the jars land in a
    temporary folder renamed into place, so a broker never sees half a copy.
    """
    if _jars_current(lib_dir, pom):
        return lib_dir
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    with (lib_dir.parent / ".lib.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_current(lib_dir, pom):
            return lib_dir
        if shutil.which("mvn") is None:
            raise StackError("Kafka jars missing and `mvn` not found: run deploy/install.sh")
        fresh = Path(tempfile.mkdtemp(prefix=".lib-", dir=lib_dir.parent))
        try:
            done = subprocess.run(
                ["mvn", "-B", "-q", "-f", str(pom), f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={fresh}"],
                cwd=pom.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                check=False,
            )
            if done.returncode != 0:
                raise StackError(f"mvn could not fetch the Kafka jars:\n{done.stdout}{done.stderr}")
            (fresh / _JAR_STAMP).write_text(_sha256(pom))
            fresh.chmod(0o755)
            if lib_dir.exists():
                stale = lib_dir.with_name(f".lib-stale-{os.getpid()}")
                lib_dir.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
            fresh.rename(lib_dir)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    return lib_dir


def _jars_current(lib_dir: Path, pom: Path) -> bool:
    if not any(lib_dir.glob("*.jar")):
        return False
    stamp = lib_dir / _JAR_STAMP
    if not stamp.exists():
        # Copied by hand with the documented mvn command: adopt it rather than refetch.
        stamp.write_text(_sha256(pom))
        return True
    return stamp.read_text().strip() == _sha256(pom)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise StackError("`java` not found (install a JRE 17+, e.g. openjdk-17-jre-headless)")
    return found


class KafkaBroker:
    """One broker whose files live in ``<state_dir>/kafka`` and which listens on loopback."""

    def __init__(
        self,
        state_dir: Path,
        port: int = DEFAULT_KAFKA_PORT,
        controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT,
        *,
        max_heap: str = "1g",
        lib_dir: Path = LIB_DIR,
    ) -> None:
        self.home = state_dir.resolve() / "kafka"
        self.port = port
        self.controller_port = controller_port
        self.max_heap = max_heap
        self.lib_dir = lib_dir
        self.config_file = self.home / "server.properties"
        self.log4j_file = self.home / "log4j2.properties"
        self.data_dir = self.home / "data"
        self.log_dir = self.home / "logs"
        self.pid_file = self.home / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's PID while it runs (checked against its command line), else None."""
        pid = read_pid(self.pid_file)
        if pid is not None and pid_matches(pid, str(self.config_file)):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid is not None

    def is_healthy(self, timeout: float = 2.0) -> bool:
        """True when the broker answers a metadata request."""
        return broker_answers(self.bootstrap, timeout)

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker unless it already runs; returns once it answers metadata."""
        if self.is_running():
            self._wait_healthy(timeout)
            return
        ensure_jars(self.lib_dir)
        for folder in (self.home, self.data_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._render_configs()
        self._format_storage()
        if not wait_ports_closed((self.port, self.controller_port), 5.0):
            raise StackError(
                f"port {self.port} or {self.controller_port} is taken by another process"
            )
        with (self.log_dir / "stdout.log").open("ab") as out:
            proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.home, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self._wait_healthy(timeout, proc.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown by SIGTERM; SIGKILL when it takes longer than ``timeout``."""
        pid = self.pid
        if pid is not None:
            if not stop_pid(pid, timeout):
                _log.warning("Kafka broker %s ignored SIGTERM for %.0f s; killed", pid, timeout)
            wait_ports_closed((self.port, self.controller_port), 10.0)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (for fault-tolerance tests)."""
        pid = self.pid
        if pid is not None:
            stop_pid(pid, 0.0, signal.SIGKILL)
            wait_ports_closed((self.port, self.controller_port), 10.0)
        self.pid_file.unlink(missing_ok=True)

    def _render_configs(self) -> None:
        write_if_changed(self.config_file, render_template(
            KAFKA_DEPLOY_DIR / "server.properties",
            {"PORT": self.port, "CONTROLLER_PORT": self.controller_port,
             "LOG_DIRS": self.data_dir},
        ))
        write_if_changed(self.log4j_file, render_template(
            KAFKA_DEPLOY_DIR / "log4j2.properties", {"LOG_DIR": self.log_dir},
        ))

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        # --ignore-formatted: a format interrupted after meta.properties was written by a
        # concurrent start must not fail this one.
        self._storage_tool("format", "-t", random_cluster_id(), "-c", str(self.config_file),
                           "--standalone", "--ignore-formatted")

    def _storage_tool(self, *args: str) -> str:
        log4j = KAFKA_DEPLOY_DIR / "log4j2-tools.properties"
        done = subprocess.run(
            [_java(), "-Xmx256m", f"-Dlog4j2.configurationFile={log4j}",
             "-cp", f"{self.lib_dir}/*", "kafka.tools.StorageTool", *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
        )
        if done.returncode != 0:
            raise StackError(f"StorageTool {args[0]} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def _command(self) -> list[str]:
        return [
            _java(), "-Xms256m", f"-Xmx{self.max_heap}", "-server", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.log_dir}", f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp", f"{self.lib_dir}/*", _MAIN_CLASS, str(self.config_file),
        ]

    def _wait_healthy(self, timeout: float, pid: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid is not None and not pid_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"Kafka broker exited during start-up; log tail:\n"
                    f"{tail(self.log_dir / 'server.log')}\n{tail(self.log_dir / 'stdout.log')}"
                )
            if tcp_listening("127.0.0.1", self.port) and self.is_healthy(timeout=2.0):
                return
            time.sleep(0.2)
        if pid is not None:
            stop_pid(pid, 10.0)
            self.pid_file.unlink(missing_ok=True)
        raise StackError(f"Kafka broker not healthy on {self.bootstrap} after {timeout:.0f} s")


def random_cluster_id() -> str:
    """What ``kafka.tools.StorageTool random-uuid`` prints, without a JVM start (~0.9 s).

    Kafka's ``Uuid.randomUuid()``: a random (v4) UUID in URL-safe base64 without padding,
    drawn again when it would start with "-" (it would read as a command-line flag).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when the cluster at ``bootstrap`` answers a metadata request in time."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(quiet_client_config(bootstrap))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:  # any failure means "not healthy yet"
        return False
    return bool(metadata.brokers)


def quiet_client_config(bootstrap: str) -> dict[str, str | int | float]:
    """Client config for polling servers that may be down.

    librdkafka logs every refused connection to stderr at level 3; a readiness loop would
    print dozens of them, so only emergencies are logged.
    """
    return {"bootstrap.servers": bootstrap, "log_level": 0}
