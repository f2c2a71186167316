"""`.ci/system-deps.sh`, the set-up of `.ci/run` and the CI workflow: `.ci/run` reads its output
through a command substitution, so the call must end while the Docker daemon it started keeps
running. Stand-ins for docker, dockerd, wrk and sudo on PATH; nothing is installed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

STUBS = {
    # `docker info` answers once the stand-in daemon has started
    "docker": '[ "$1" = info ] && [ -e "$STUB_DIR/running" ] && exit 0\nexit 1\n',
    # a daemon: stays up (its own timeout ends it if the test cannot)
    "dockerd": 'echo $$ >"$STUB_DIR/dockerd.pid"\ntouch "$STUB_DIR/running"\nexec sleep 120\n',
    "wrk": "exit 0\n",
    "sudo": 'exec "$@"\n',
}


def script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def bash(args: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """bash ARGS, bounded: a call that hangs fails the test at 60 s."""
    return subprocess.run(
        ["bash", *args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def stub_path(tmp_path: Path):
    for name, body in STUBS.items():
        script(tmp_path / name, body)
    yield tmp_path
    pid_file = tmp_path / "dockerd.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_eval_of_system_deps_returns_while_the_daemon_it_started_runs(stub_path: Path):
    env = {
        **{k: v for k, v in os.environ.items() if k != "GITHUB_ENV"},
        "PATH": f"{stub_path}:{os.environ['PATH']}",
        "STUB_DIR": str(stub_path),
        "CHROMIUM": "/bin/sh",  # any executable: no browser is installed
        "BASE_IMAGE": "example.org/base:1",  # given: nothing is pulled or built
        "DOCKERD_LOG": str(stub_path / "dockerd.log"),
    }
    # before the fix the daemon held the pipe open and this call never ended
    done = bash(["-c", 'eval "$(.ci/system-deps.sh)" && echo "base=$BASE_IMAGE"'], env, ROOT)
    assert done.returncode == 0, done.stderr
    assert "starting dockerd" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "base=example.org/base:1"
    os.kill(int((stub_path / "dockerd.pid").read_text()), 0)  # the daemon is still up


def test_ci_run_stops_when_the_system_parts_fail(tmp_path: Path):
    """`.ci/run` with a system-deps script that fails: no `make test` on a half-set-up machine."""
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    script(
        tmp_path / ".ci" / "system-deps.sh",
        "echo 'export BASE_IMAGE=x'\necho 'no docker' >&2\nexit 1\n",
    )
    (tmp_path / "bin").mkdir()
    script(tmp_path / "bin" / "make", f"touch {tmp_path}/make-ran\n")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    done = bash([str(tmp_path / ".ci" / "run")], env)
    assert done.returncode == 1, done.stderr
    assert "no docker" in done.stderr
    assert not (tmp_path / "make-ran").exists()
