"""A real `bentoml serve` of the tiny model that the scoring tests can stop and restart."""

from __future__ import annotations

import pytest

from tests.service.serving import BentoServer, free_port


class RestartableServer:
    """`bentoml serve service:SentimentClassifier` that can be stopped and started again on the
    same port (the URL a scoring run holds stays valid across the restart)."""

    def __init__(self, model_tag: str, env: dict[str, str] | None = None) -> None:
        self.model_tag = model_tag
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: BentoServer | None = None

    def start(self, timeout: float = 90.0, env: dict[str, str] | None = None) -> None:
        """Start (again), with `env` replacing the environment given so far (e.g. API_KEY)."""
        self.env = env if env is not None else self.env
        env = {"MODEL_TAG": self.model_tag, "WORKERS": "1", **self.env}
        self.server = BentoServer("service:SentimentClassifier", env=env, port=self.port)
        self.server.wait_ready(timeout)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="module")
def scoring_server(tiny_bento_model):
    """A running server this module may stop and restart (`.stop()`, `.start()`)."""
    server = RestartableServer(str(tiny_bento_model))
    server.start()
    try:
        yield server
    finally:
        server.stop()
