"""A stored model travels by tag: `make model-publish` (bentoml models export) to a bucket, then
`make model-import` (bentoml models import) into another, empty model store, where it gives the
same answers. The bucket is a local S3-compatible server (moto); BentoML reaches s3:// and gs://
through the same fsspec code, with s3fs and gcsfs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.serving import REPO_ROOT, free_port
from tests.tiny import tiny_dataset

pytestmark = pytest.mark.slow
BUCKET = "models-bucket"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A local S3 (moto's server, in a thread) with one bucket; its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=url, **CREDENTIALS).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


def make(target: str, home: Path, endpoint: str, **variables: str) -> str:
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = [f"{k}={v}" for k, v in variables.items()]
    proc = subprocess.run(
        ["make", "--no-print-directory", target, f"BIN={Path(sys.executable).parent}", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def answers(model_path: str) -> list[dict]:
    from serving.inference import Classifier

    texts = [row["text"] for row in tiny_dataset(16, seed=3)]
    return Classifier.from_dir(model_path).predict(texts)


def test_a_published_model_imports_into_an_empty_store_and_answers_the_same(
    tiny_bento_model, s3_endpoint, tmp_path
):
    import bentoml

    tag = str(tiny_bento_model)
    prefix = f"s3://{BUCKET}/models/"
    out = make(
        "model-publish",
        Path(os.environ["BENTOML_HOME"]),
        s3_endpoint,
        MODEL_URI=prefix,
        MODEL_TAG=tag,
    )
    assert f"{tag.replace(':', '-')}.bentomodel" in out

    other_home = tmp_path / "other-bentoml-home"
    other_home.mkdir()
    make("model-import", other_home, s3_endpoint, MODEL_URI=prefix, MODEL_TAG=tag)

    from bentoml._internal.models.model import ModelStore

    imported = ModelStore(str(other_home / "models")).get(tag)
    original = bentoml.models.get(tag)
    assert imported.tag == original.tag
    assert imported.info.metadata == original.info.metadata
    assert imported.info.labels == original.info.labels
    assert answers(imported.path) == answers(original.path)


def test_import_from_a_prefix_needs_an_exact_tag(tmp_path):
    proc = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "model-import",
            "MODEL_URI=s3://b/models/",
            "MODEL_TAG=sentiment-classifier:latest",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and "needs an exact MODEL_TAG" in proc.stderr
