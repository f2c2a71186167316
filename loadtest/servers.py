"""Start and stop the servers under test: loopback only, a free port, own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from loadtest.traffic import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server command in its own process group, output captured to a temp log file.

    `{port}` in the command is replaced by a free loopback port (or `port`). As a context
    manager it starts, waits for `ready_path` to answer 200, and always stops the whole group on
    exit; tests that need the steps (a server that must fail to start, a SIGTERM mid-load) call
    `start()`, `wait_ready()`, `wait_exit()` and `stop()` themselves.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str] | None = None,
        ready_path: str = "/readyz",
        ready_timeout_s: float = 180.0,
        port: int | None = None,
        cwd: str | Path = REPO_ROOT,
    ) -> None:
        self.port = port or free_port()
        self.cwd = Path(cwd)
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **(env or {})}
        self.ready_path = ready_path
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self.log_path = ""
        self.started = float("nan")
        self.ready_s = float("nan")

    def start(self) -> ServerProcess:
        fd, self.log_path = tempfile.mkstemp(prefix="server-", suffix=".log")
        self.started = time.monotonic()
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __enter__(self):
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.stop()
        if exc_type is None:  # keep the log of a failed run for its error message
            Path(self.log_path).unlink(missing_ok=True)

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""

    def wait_ready(self, timeout: float | None = None) -> float:
        """Seconds from start until `ready_path` answered 200; raises (with the server's
        output) if the process exits or the time runs out."""
        deadline = self.started + (timeout or self.ready_timeout_s)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(self.command)} exited with {self.proc.returncode}:\n"
                    f"{self.output()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                    if resp.status == 200:
                        self.ready_s = time.monotonic() - self.started
                        return self.ready_s
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise TimeoutError(
            f"{' '.join(self.command)} not ready after {timeout or self.ready_timeout_s} s:\n"
            f"{self.output()[-3000:]}"
        )

    def wait_exit(self, timeout: float = 60.0) -> int:
        """The exit code once the process has ended (it is stopped if it outlives `timeout`)."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (server + workers), SIGKILL what is left after 15 s.

    What is left includes children that outlive their parent: a forked worker whose server
    exited on SIGTERM would otherwise keep a core busy through the next measurement."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def bentoml_cli() -> list[str]:
    """The `bentoml` CLI of this interpreter's environment."""
    script = Path(sys.executable).parent / "bentoml"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bentoml"]


def bentoml_serve_command(target: str = "service:SentimentClassifier") -> list[str]:
    """`bentoml serve` of this interpreter's environment, on 127.0.0.1:{port}."""
    return [*bentoml_cli(), "serve", target, "--host", "127.0.0.1", "--port", "{port}"]


def baseline_command(
    model_dir: str | Path, threads: int | None = None, batching: str = "request"
) -> list[str]:
    """The FastAPI + PyTorch baseline (`python -m loadtest.baseline`) on 127.0.0.1:{port}."""
    model = str(Path(model_dir).resolve())
    cmd = [sys.executable, "-m", "loadtest.baseline", "--model-dir", model]
    cmd += ["--host", "127.0.0.1", "--port", "{port}", "--batching", batching]
    return cmd + (["--threads", str(threads)] if threads else [])
