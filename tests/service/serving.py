"""Start and stop a real `bentoml serve` subprocess on a free loopback port (used by fixtures)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from loadtest.servers import bentoml_cli, free_port, stop_process_group

REPO_ROOT = Path(__file__).resolve().parents[2]


class BentoServer:
    """`bentoml serve <target>` in its own process group, output captured to a temp file."""

    def __init__(self, target: str, env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, self.log_path = tempfile.mkstemp(prefix="bentoml-serve-", suffix=".log")
        cmd = [*bentoml_cli(), "serve", target, "--host", "127.0.0.1", "--port", str(self.port)]
        self.started = time.monotonic()
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until /readyz answered 200; raises with the server output otherwise."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"bentoml serve exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"bentoml serve not ready after {timeout} s:\n{self.output()}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        """Terminate the whole process group (server + workers), then kill what is left."""
        stop_process_group(self.proc)
