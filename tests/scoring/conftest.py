"""A real `bentoml serve` of the tiny model that the scoring tests can stop and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`bentoml serve service:SentimentClassifier` on 127.0.0.1:`port`, restartable on that port."""

    def __init__(self, model_tag: str, port: int, log_dir: Path) -> None:
        self.model_tag, self.port, self.log_dir = model_tag, port, log_dir
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> None:
        env = {**os.environ, "MODEL_TAG": self.model_tag, "WORKERS": "1"}
        self.starts += 1
        log = (self.log_dir / f"serve-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "service:SentimentClassifier",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited: see {log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"bentoml serve not ready after {timeout} s: see {log.name}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def scoring_model_tag(request, tmp_path_factory) -> str:
    """The tiny model in the temp model store: the shared `tiny_bento_model` when it exists."""
    try:
        return str(request.getfixturevalue("tiny_bento_model"))
    except pytest.FixtureLookupError:
        from export.config import ExportConfig
        from export.pipeline import export_run

        run_dir = request.getfixturevalue("tiny_run_dir")
        config = ExportConfig(optimize="off", force=True, benchmark_rows=8)
        return str(export_run(run_dir, config))


@pytest.fixture(scope="module")
def scoring_server(scoring_model_tag, tmp_path_factory):
    """A running server this module may stop and restart (`.stop()`, `.start()`)."""
    server = ServerProcess(scoring_model_tag, free_port(), tmp_path_factory.mktemp("serve-logs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
