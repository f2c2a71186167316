"""The service image, built once per session by docker/build.sh (what `make container` runs)
from the tiny model, and removed at the end with every container the tests started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.container.docker_run import Docker, docker_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def docker() -> Docker:
    client = docker_cli()
    if client is None:
        reason = "no Docker daemon reachable (.ci/run installs and starts one)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    d = Docker(client)
    yield d
    d.remove_all()


@pytest.fixture(scope="session")
def image(docker, tiny_bento_model) -> str:
    """Tag of the image of a bento of the tiny model (BASE_IMAGE from the environment, as
    `make container`: .ci/run sets it to the base built from Debian packages)."""
    name = f"sentiment-service-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MODEL_TAG": str(tiny_bento_model),
        "IMAGE": name,
        "BENTOML": str(Path(sys.executable).parent / "bentoml"),
    }
    out = subprocess.run(
        ["bash", str(ROOT / "docker" / "build.sh")],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)
    tag = re.search(r"^__image__:(\S+)$", out.stdout, re.MULTILINE).group(1)
    yield tag
    docker.remove_all()
    docker("rmi", "-f", tag, check=False)
