"""deploy/install.sh: idempotent, and it never upgrades PostgreSQL under a running server."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "install.sh"


def _run(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, cwd=ROOT,  # noqa: S603
                          env={**os.environ, **env}, timeout=timeout, check=False)


def test_second_run_skips_the_timescaledb_build_quickly(stack):
    # installed already (make test ran the installer): no tarball needed, nothing rebuilt
    started = time.monotonic()
    done = _run({"TURNSTILE_TIMESCALEDB_TARBALL": "/nonexistent/timescaledb.tar.gz"})
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TimescaleDB" not in done.stdout and "apt-get" not in done.stdout
    assert elapsed < 15, elapsed


def test_packages_are_not_installed_under_a_running_postgresql(stack, tmp_path):
    """The session's server runs: pretend a package is missing and see apt-get not called."""
    assert stack.postgres is not None and stack.postgres.is_running()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")  # nothing installed
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    done = _run({"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refusing to install PostgreSQL packages" in done.stdout
    assert str(stack.postgres.data_dir) in done.stdout  # names the server to stop
    assert not calls.exists()
