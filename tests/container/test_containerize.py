"""`bentoml containerize` from the repository (`make containerize`, docker/build.sh
BUILDER=bentoml) builds the image `make container` builds: the same base, Dockerfile, packages,
user, file owners and modes, entry point, and the same answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.container.conftest import build_image
from tests.tiny import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]
# Owner, group and mode of every file of the bento (the venv is one layer, compared whole), less
# what differs by nature: the bento's own version (bento.yaml) and containerize's empty hf-models/.
FILES = (
    "find /app -path /app/.venv -prune -o -printf '%u:%g %m %P\\n' | sort"
    " | grep -v -e ' bento/bento.yaml$' -e ' bento/hf-models$'"
)
PACKAGES = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted(f'{d.metadata[\"Name\"]}=={d.version}' for d in m.distributions())))"
)

CLASSIFY = (
    "import sys, urllib.request as u; r = u.Request('http://127.0.0.1:3000/classify',"
    " data=sys.argv[1].encode(), headers={'content-type': 'application/json'});"
    " print(u.urlopen(r).read().decode())"
)


@pytest.fixture(scope="module")
def containerized(docker, tiny_bento_model) -> str:
    tag, output = build_image(
        str(tiny_bento_model), "sentiment-service-containerize-test", BUILDER="bentoml"
    )
    assert "containerizing" in output
    yield tag
    docker("rmi", "-f", tag, check=False)


def inspect(docker, image: str) -> dict:
    return json.loads(docker("image", "inspect", image))[0]


def test_same_base_config_packages_and_files_as_make_container(docker, image, containerized):
    ours, theirs = inspect(docker, image), inspect(docker, containerized)
    base = inspect(docker, os.environ.get("BASE_IMAGE", "python:3.11-slim"))
    n = len(base["RootFS"]["Layers"])
    assert (
        ours["RootFS"]["Layers"][:n] == theirs["RootFS"]["Layers"][:n] == base["RootFS"]["Layers"]
    )
    # the venv of the lock file: one layer, the same bytes (the same build stage)
    assert ours["RootFS"]["Layers"][n] == theirs["RootFS"]["Layers"][n]
    for key in ("User", "Entrypoint", "Cmd", "Env", "WorkingDir", "ExposedPorts"):
        assert ours["Config"][key] == theirs["Config"][key], key
    assert ours["Config"]["User"] not in ("", "0", "root")
    assert ours["Config"]["Labels"].keys() == theirs["Config"]["Labels"].keys()
    assert (
        ours["Config"]["Labels"]["ai.bentoml.model"]
        == theirs["Config"]["Labels"]["ai.bentoml.model"]
    )

    def run(img: str, script: str) -> str:
        return docker("run", "--rm", "--entrypoint", "sh", img, "-c", script)

    assert run(image, FILES) == run(containerized, FILES)  # owners (root) and read-only modes

    def packages(img: str) -> list[str]:
        return json.loads(docker("run", "--rm", "--entrypoint", "python", img, "-c", PACKAGES))

    assert packages(image) == packages(containerized)


def test_serves_the_same_answers(docker, image, containerized):
    body = json.dumps({"texts": [r["text"] for r in tiny_dataset(8, seed=5)]})
    answers = []
    for img in (image, containerized):
        container = docker.start(img, "--cpus", "2")
        container.wait_for("/readyz", timeout=60)
        answers.append(container.exec("python", "-c", CLASSIFY, body))
    assert json.loads(answers[0]) == json.loads(answers[1])
