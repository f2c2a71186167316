"""The service's ASGI app in-process (level 2 of the testing guide), built with given settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def service_client(**env: str) -> Iterator[Any]:
    """A Starlette TestClient over the service declared with the settings the variables `env`
    give (`service.declare(settings).to_asgi()`); the process environment is neither read for
    them nor changed."""
    from starlette.testclient import TestClient

    import service
    from serving.settings import ServiceSettings

    app = service.declare(ServiceSettings.from_env(env)).to_asgi()
    with TestClient(app) as client:
        yield client
