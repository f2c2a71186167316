"""The slim bento: `bentoml build` packs only the service, its runtime package, the pinned
runtime deps and the model; its Dockerfile carries no compiler, no git, no torch; the built bento
serves /classify."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from loadtest.servers import bentoml_cli
from tests.service.serving import REPO_ROOT, BentoServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_bento(tiny_bento_model) -> tuple[str, Path]:
    """(tag, path) of a bento built from bentofile.yaml with the tiny model packed in."""
    env = {**os.environ, "MODEL_TAG": str(tiny_bento_model), "BENTOML_DO_NOT_TRACK": "true"}
    out = subprocess.run(
        [*bentoml_cli(), "build", "-o", "tag"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tag = re.search(r"__tag__:(\S+)", out.stdout).group(1)
    name, version = tag.split(":")
    return tag, Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version


def test_bento_holds_only_the_service_and_runtime_packages(built_bento, tiny_bento_model):
    _, path = built_bento
    src = path / "src"
    sources = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    serving = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "serving").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    assert sources == sorted([*serving, "service.py", "bentofile.yaml"])
    # docker/requirements.lock: every package pinned (tests/deploy/test_lock.py)
    requirements = (path / "env/python/requirements.txt").read_text().lower()
    lines = {line for line in requirements.splitlines() if line and not line.startswith("#")}
    lock = (REPO_ROOT / "docker" / "requirements.lock").read_text().lower()
    assert lines == {line for line in lock.splitlines() if line and not line.startswith("#")}
    assert all(re.fullmatch(r"[a-z0-9._-]+==[^=\s]+", line) for line in lines), lines
    info = yaml.safe_load((path / "bento.yaml").read_text())
    models = [m["tag"] for svc in info["services"] for m in svc["models"]]
    assert models == [str(tiny_bento_model)]


def test_bento_carries_the_web_page_and_its_link(built_bento):
    from serving.webpage import UI_DIR, files

    _, path = built_bento
    shipped = path / "src" / "serving" / "ui"
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == {
        name: (UI_DIR / name).read_bytes() for name in files()
    }
    assert "](ui/)" in (path / "README.md").read_text()  # the OpenAPI page's description


def test_dockerfile_is_slim(built_bento):
    """The generated Dockerfile: python:3.11-slim by default, no apt, no compiler, no git;
    the packages from the lock file with --no-deps (tests/container builds and runs it)."""
    dockerfile = (built_bento[1] / "env/docker/Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile
    assert "--no-deps" in dockerfile
    for heavy in ("build-essential", "apt-get", "git", "torch", "transformers", "gcc", "curl"):
        assert heavy not in dockerfile, heavy


@pytest.mark.server
def test_built_bento_serves_classify(built_bento):
    tag, _ = built_bento
    server = BentoServer(tag, env={"MODEL_TAG": ""})
    try:
        server.wait_ready()
        resp = httpx.post(f"{server.url}/classify", json={"texts": ["a great film", "dull"]})
        assert resp.status_code == 200, resp.text
        assert [a["label"] for a in resp.json()] == ["positive", "negative"]
        page = httpx.get(f"{server.url}/ui", follow_redirects=True)
        assert page.status_code == 200 and "<title>Sentiment classifier</title>" in page.text
        info = httpx.get(f"{server.url}/docs.json").json()["info"]
        assert "](ui/)" in info["description"] and info["version"] == tag.split(":")[1]
    finally:
        server.stop()
