"""Level 2: the service's ASGI app in-process (BentoML's app factory, Starlette TestClient)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.cases import BAD_IDS, BAD_REQUESTS
from tests.service.inprocess import service_client

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(tiny_bento_model):
    """A TestClient over `SentimentClassifier.to_asgi()`, imported with MODEL_TAG = the tiny model."""
    with service_client(MODEL_TAG=str(tiny_bento_model)) as test_client:
        yield test_client


def test_classify_answers_in_input_order(client, reference, review_rows):
    texts = [r["text"] for r in review_rows]
    resp = client.post("/classify", json={"texts": texts})
    assert resp.status_code == 200, resp.text
    answers = resp.json()
    assert [a["label"] for a in answers] == [r["label"] for r in review_rows]
    expected = reference(texts)
    for answer, probs in zip(answers, expected, strict=True):
        assert set(answer) == {"label", "score", "scores"}
        assert answer["scores"] == pytest.approx(
            dict(zip(reference.labels, probs, strict=True)), abs=1e-5
        )
        assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "message"), BAD_REQUESTS, ids=BAD_IDS
)
def test_bad_input_gets_400_naming_the_problem(client, name, body, content_type, status, message):
    headers = {"content-type": content_type or "application/json"}
    resp = client.post("/classify", content=body, headers=headers)
    assert resp.status_code == status, resp.text
    assert message in resp.text
    assert client.get("/readyz").status_code == 200


def test_openapi_and_health_endpoints(client, tiny_bento_model):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/").status_code == 200
    spec = client.get("/docs.json").json()
    schema = json.dumps(spec["paths"]["/classify"])
    assert "texts" in schema and "maxItems" in schema
    # served from source: the service's description and the served model's version
    assert spec["info"]["version"] == tiny_bento_model.version
    assert "](ui/)" in spec["info"]["description"]
    answers = spec["paths"]["/classify"]["post"]["responses"]["200"]["content"]
    assert list(answers) == ["application/json"]


def test_answers_are_declared_json(client):
    resp = client.post("/classify", json={"texts": ["a great film"]})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"


def test_serving_imports_no_torch_or_transformers(tiny_bento_model):
    """Importing and instantiating the service (model loaded, one prediction) stays slim."""
    code = (
        "import asyncio, json, sys, service\n"
        "svc = service.SentimentClassifier.inner()\n"
        "asyncio.run(svc.model.classify(['a great film']))\n"
        "svc.stop()\n"
        "heavy = {'torch', 'transformers', 'optimum', 'datasets', 'sklearn', 'pandas'}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    env = {**os.environ, "MODEL_TAG": str(tiny_bento_model)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
