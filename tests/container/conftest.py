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


def build_image(model_tag: str, name: str, **env: str) -> tuple[str, str]:
    """docker/build.sh (what `make container` runs; `BUILDER=bentoml` for `make containerize`)
    of a bento of `model_tag` as image `name`: (the image's tag, the build's output)."""
    out = subprocess.run(
        ["bash", str(ROOT / "docker" / "build.sh")],
        env={
            **os.environ,
            "MODEL_TAG": model_tag,
            "IMAGE": name,
            "BENTOML": str(Path(sys.executable).parent / "bentoml"),
            **env,
        },
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return re.search(r"^__image__:(\S+)$", out.stdout, re.MULTILINE).group(1), out.stdout


@pytest.fixture(scope="session")
def image(docker, tiny_bento_model) -> str:
    """Tag of the image of a bento of the tiny model (BASE_IMAGE from the environment, as
    `make container`: .ci/run sets it to the base built from Debian packages)."""
    tag, output = build_image(
        str(tiny_bento_model), f"sentiment-service-test-{uuid.uuid4().hex[:8]}"
    )
    print(output)
    yield tag
    docker.remove_all()
    docker("rmi", "-f", tag, check=False)
