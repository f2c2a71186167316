"""Real `bentoml serve` subprocesses for tests, through the one server helper the benchmark uses
too (`loadtest.servers.ServerProcess`)."""

from __future__ import annotations

from loadtest.servers import ServerProcess, bentoml_serve_command, free_port
from loadtest.traffic import REPO_ROOT

__all__ = ["REPO_ROOT", "BentoServer", "free_port"]


def BentoServer(
    target: str, env: dict[str, str] | None = None, port: int | None = None
) -> ServerProcess:
    """`bentoml serve <target>` on a free loopback port, started (call `.wait_ready()`)."""
    return ServerProcess(bentoml_serve_command(target), env=env, port=port).start()
