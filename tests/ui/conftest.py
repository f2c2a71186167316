"""Fixtures for the web page's tests: the system Chromium for pytest-playwright, a page that
may not reach any other origin, and a real server that requires an API key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ui.browser import ARTIFACTS, launch_args, missing_browser

API_KEY = "ui-test-key-7f3a"


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """pytest-playwright launches this Chromium. Without one the browser tests skip, except in
    CI (`CI` set, as `.ci/run` does), where they fail."""
    if why := missing_browser():
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the browser tests", pytrace=False)
        pytest.skip(why)
    return launch_args()


@pytest.fixture
def offline(context) -> list[str]:
    """Requests to any origin but the local test servers are aborted, as on a closed network,
    and listed here: the page must work without them."""
    blocked: list[str] = []

    def route(route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "data:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", route)
    return blocked


@pytest.fixture
def page(context, offline):
    """pytest-playwright's page, offline (see `offline`)."""
    return context.new_page()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the screenshots go (UI_ARTIFACTS, default reports/tmp/ui/, git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def keyed_server(tiny_bento_model):
    """URL of a real `bentoml serve` of the tiny model with API_KEY set."""
    from tests.service.serving import BentoServer

    server = BentoServer(
        "service:SentimentClassifier",
        env={"MODEL_TAG": str(tiny_bento_model), "API_KEY": API_KEY},
    )
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()
