"""The page's files and how the service serves them (the ASGI app in-process, API_KEY set):
static, small, self-contained, public, and in front of nothing else."""

from __future__ import annotations

import re

import pytest

from serving.webpage import UI_DIR, files
from tests.service.inprocess import service_client
from tests.ui.conftest import API_KEY

PAGE_FILES = {"index.html", "app.js", "style.css"}
SIZE_BUDGET = 32 * 1024  # bytes, the three files together
# An absolute or protocol-relative URL to another host (a CDN, fonts, analytics).
EXTERNAL_URL = re.compile(r"(?:https?:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::\d+)?/", re.IGNORECASE)


@pytest.fixture(scope="module")
def client(tiny_bento_model):
    """A TestClient over `SentimentClassifier.to_asgi()`, imported with the tiny model and an
    API key."""
    with service_client(MODEL_TAG=str(tiny_bento_model), API_KEY=API_KEY) as test_client:
        yield test_client


def test_the_page_is_three_small_files_with_nothing_from_elsewhere():
    sizes = files()
    assert set(sizes) == PAGE_FILES
    assert sum(sizes.values()) < SIZE_BUDGET, sizes
    for name in sizes:
        text = (UI_DIR / name).read_text(encoding="utf-8")
        assert not EXTERNAL_URL.search(text), f"{name} refers to another host"
    html = (UI_DIR / "index.html").read_text(encoding="utf-8")
    assert set(re.findall(r'(?:src|href)="([^"]+)"', html)) == {
        "data:,",  # no favicon request
        "style.css",
        "app.js",
        "../",  # the OpenAPI page
    }


@pytest.mark.parametrize("name", sorted(PAGE_FILES))
def test_page_files_are_public_static_and_revalidated(client, name):
    path = "/ui/" if name == "index.html" else f"/ui/{name}"
    resp = client.get(path)  # no API key
    assert resp.status_code == 200, resp.text
    assert resp.content == (UI_DIR / name).read_bytes()
    media = {"html": "text/html", "js": "javascript", "css": "text/css"}[name.rsplit(".")[-1]]
    assert media in resp.headers["content-type"]
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "no-cache"
    again = client.get(path, headers={"If-None-Match": resp.headers["etag"]})
    assert again.status_code == 304
    assert resp.headers["x-request-id"]  # the guard is in front of the page too


def test_ui_without_slash_redirects_relatively_and_other_paths_are_untouched(client):
    resp = client.get("/ui", follow_redirects=False)
    assert resp.status_code == 308
    assert resp.headers["location"] == "ui/"  # relative: holds behind a proxy or path prefix
    assert client.get("/ui/nothing-here.js").status_code == 404
    assert client.post("/ui/", json={"texts": ["ok"]}).status_code == 405
    assert client.get("/uix").status_code == 401  # not the page: the guard wants the key

    assert client.post("/classify", json={"texts": ["ok"]}).status_code == 401
    ok = client.post("/classify", json={"texts": ["ok"]}, headers={"X-API-Key": API_KEY})
    assert ok.status_code == 200
    assert "swagger-ui" in client.get("/").text  # BentoML's OpenAPI page is still at /


def test_openapi_page_links_to_the_web_page(client):
    description = client.get("/docs.json").json()["info"]["description"]
    assert "](ui/)" in description  # a Markdown link, relative to the page at /
    assert "This is a Machine Learning Service created with BentoML" not in description
