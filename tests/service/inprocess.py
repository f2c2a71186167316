"""The service's ASGI app in-process (level 2 of the testing guide), imported with settings."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def service_client(**env: str) -> Iterator[Any]:
    """A Starlette TestClient over `SentimentClassifier.to_asgi()`, with `service.py` imported
    under the environment variables `env` (restored afterwards)."""
    from starlette.testclient import TestClient

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    sys.modules.pop("service", None)
    try:
        import service

        with TestClient(service.SentimentClassifier.to_asgi()) as client:
            yield client
    finally:
        sys.modules.pop("service", None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
