"""Level 3: a real `bentoml serve service:SentimentClassifier` subprocess, over HTTP."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.service.cases import TRANSPORT_IDS, TRANSPORT_REFUSALS
from tests.service.serving import BentoServer

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def http(classify_server):
    limits = httpx.Limits(max_connections=64)
    with httpx.Client(base_url=classify_server, timeout=30, limits=limits) as client:
        yield client


def histogram(metrics: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts {le: count} of a Prometheus histogram, summed over labels."""
    buckets: dict[float, float] = {}
    for le, value in re.findall(
        rf'^{name}_bucket{{.*?le="([^"]+)".*?}} (\S+)$', metrics, re.MULTILINE
    ):
        buckets[float(le)] = buckets.get(float(le), 0.0) + float(value)
    return buckets


def test_classify_in_input_order_matches_onnxruntime(http, reference, review_rows):
    texts = [r["text"] for r in review_rows]
    resp = http.post("/classify", json={"texts": texts})
    assert resp.status_code == 200, resp.text
    answers = resp.json()
    expected = reference(texts)
    assert [a["label"] for a in answers] == [reference.labels[k] for k in expected.argmax(1)]
    assert [a["label"] for a in answers] == [r["label"] for r in review_rows]
    for answer, probs in zip(answers, expected, strict=True):
        assert answer["scores"] == pytest.approx(
            dict(zip(reference.labels, probs, strict=True)), abs=1e-5
        )
        assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert answer["score"] == answer["scores"][answer["label"]]


def test_request_larger_than_a_batch_is_split_and_reassembled(http, reference, review_rows):
    texts = [review_rows[i % len(review_rows)]["text"] + " " + "film " * (i % 7) for i in range(64)]
    resp = http.post("/classify", json={"texts": texts})  # 64 items > MAX_BATCH_SIZE (32)
    assert resp.status_code == 200, resp.text
    expected = reference(texts)
    assert [a["label"] for a in resp.json()] == [reference.labels[k] for k in expected.argmax(1)]


@pytest.fixture(scope="module")
def batching_server(tiny_bento_model):
    """A server that holds each batch open >= 50 ms, so concurrent requests always merge (the
    tiny model answers in about a millisecond, faster than a test client can send requests)."""
    env = {"MODEL_TAG": str(tiny_bento_model), "BATCH_MIN_WAIT_MS": "50", "BATCH_WAIT_MS": "100"}
    server = BentoServer("service:SentimentClassifier", env=env)
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


def test_concurrent_requests_are_answered_and_batched(batching_server, reference, review_rows):
    texts = [review_rows[i % len(review_rows)]["text"] for i in range(96)]
    expected = [reference.labels[k] for k in reference(texts).argmax(1)]
    limits = httpx.Limits(max_connections=32)
    with httpx.Client(base_url=batching_server, timeout=30, limits=limits) as http:
        # BentoML learns its batch wait after its first few dozen calls: a few bounded rounds.
        for _round in range(4):
            with ThreadPoolExecutor(32) as pool:
                post = lambda t: http.post("/classify", json={"texts": [t]})
                responses = list(pool.map(post, texts))
            assert [r.status_code for r in responses] == [200] * len(texts)
            assert [r.json()[0]["label"] for r in responses] == expected
            metrics = http.get("/metrics").text
            texts_per_batch = histogram(metrics, "sentiment_batch_size")
            assert texts_per_batch, metrics
            if texts_per_batch[1.0] < texts_per_batch[float("inf")]:
                break
    # Some adaptive batch merged more than one request (single-text requests here).
    assert texts_per_batch[1.0] < texts_per_batch[float("inf")]
    assert re.search(r'^sentiment_predictions_total{label="positive"} [1-9]', metrics, re.MULTILINE)
    assert "sentiment_tokens_per_text_bucket" in metrics


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "message"), TRANSPORT_REFUSALS, ids=TRANSPORT_IDS
)
def test_a_refused_body_gets_4xx_and_server_stays_ready(
    http, name, body, content_type, status, message
):
    headers = {"content-type": content_type or "application/json"}
    resp = http.post("/classify", content=body, headers=headers)
    assert resp.status_code == status, resp.text
    assert message in resp.text
    assert http.get("/readyz").status_code == 200


def test_chunked_body_over_the_limit_is_refused(http):
    chunks = iter([b'{"texts": ["', *[b"a" * 600_000] * 3, b'"]}'])
    resp = http.post("/classify", content=chunks, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "MAX_BODY_BYTES" in resp.text
    assert http.post("/classify", json={"texts": ["a great film"]}).status_code == 200


def test_missing_model_fails_start_up_with_a_how_to(tiny_bento_model):
    server = BentoServer(
        "service:SentimentClassifier", env={"MODEL_TAG": "sentiment-classifier:nope"}
    )
    assert server.wait_exit(timeout=60) != 0
    output = server.output()
    assert "sentiment-classifier:nope" in output and "make model" in output
