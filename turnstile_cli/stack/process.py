"""Process plumbing shared by the local servers: PID checks, graceful stop, free ports.

The servers outlive the ``turnstile`` command that started them, so everything here works
from a PID alone. A PID is checked to still belong to our server before it is signalled,
because PIDs are reused; and a zombie counts as gone, because orphaned servers are
reparented to a PID 1 that may never reap them.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path


class StackError(RuntimeError):
    """A local server could not be started, reached or stopped."""


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid``, or an empty list when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_matches(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and its command line mentions ``marker``."""
    return pid_alive(pid) and any(marker in arg for arg in cmdline(pid))


def read_pid(pid_file: Path) -> int | None:
    """The PID on the first line of ``pid_file``, or None when absent or unreadable."""
    try:
        first = pid_file.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, IndexError, ValueError):
        return None


def stop_pid(pid: int, timeout: float, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Send ``sig``, wait up to ``timeout`` s, then SIGKILL; True when it exited on its own."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    if wait_until(lambda: not pid_alive(pid), timeout):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    if not wait_until(lambda: not pid_alive(pid), 10.0):
        raise StackError(f"process {pid} survived SIGKILL")
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` s pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tcp_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports_closed(ports: tuple[int, ...], timeout: float, host: str = "127.0.0.1") -> bool:
    """Wait until nothing listens on ``ports``.

    A killed server's listening sockets can outlive its process by a moment (the kernel
    closes them after the process is reaped), and a restart in that window fails to bind.
    """
    return wait_until(lambda: not any(tcp_listening(host, port) for port in ports), timeout)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ask the OS for ``count`` distinct free ports (all held open until all are chosen)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _reap(pid: int) -> None:
    # A server we started ourselves stays a zombie until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def process_started_at(pid: int) -> float | None:
    """When ``pid`` started, in Unix seconds (from /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    # Field 22 of stat (starttime, clock ticks after boot); fields[0] here is field 3.
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group whose leader is gone (a service's workers).

    Each service leads a session of its own, so its group id is its first PID; the kernel
    does not hand out that PID again while the group has members.
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
