"""The baseline app answers with the service's contract, from the same fine-tuned model."""

from __future__ import annotations

import pytest

from tests.tiny import LABELS


@pytest.fixture(scope="module")
def baseline_client(tiny_trained_run_dir):
    from fastapi.testclient import TestClient

    from loadtest.baseline import BaselineModel, create_app

    model = BaselineModel(tiny_trained_run_dir / "model", threads=1)
    assert model.max_length == 32  # the run's window, from run_info.json
    with TestClient(create_app(model)) as client:
        yield client


def test_baseline_classifies_in_input_order(baseline_client):
    texts = ["Really superb and charming film.", "Boring, dull plot.", "Brilliant!"]
    resp = baseline_client.post("/classify", json={"texts": texts})
    assert resp.status_code == 200
    answer = resp.json()
    assert [a["label"] for a in answer] == ["positive", "negative", "positive"]
    for item in answer:
        assert list(item["scores"]) == LABELS
        assert item["score"] == max(item["scores"].values())
        assert sum(item["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_baseline_rejects_bad_requests(baseline_client):
    assert baseline_client.post("/classify", json={"texts": []}).status_code == 422
    assert baseline_client.post("/classify", json={"text": "x"}).status_code == 422
    assert baseline_client.get("/readyz").status_code == 200


def test_per_text_batching_gives_the_same_answers_in_one_pass_per_text(tiny_trained_run_dir):
    from loadtest.baseline import BaselineModel

    def forward_passes(model, texts):
        calls = []
        hook = model.pipe.model.register_forward_hook(lambda *_: calls.append(1))
        try:
            return model.predict(texts), len(calls)
        finally:
            hook.remove()

    texts = ["Really superb and charming film.", "Boring, dull plot.", "Brilliant!"]
    per_request = BaselineModel(tiny_trained_run_dir / "model", threads=1)
    per_text = BaselineModel(tiny_trained_run_dir / "model", threads=1, batching="text")
    answers_a, passes_a = forward_passes(per_request, texts)
    answers_b, passes_b = forward_passes(per_text, texts)
    assert (passes_a, passes_b) == (1, 3)
    for a, b in zip(answers_a, answers_b, strict=True):
        assert a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    with pytest.raises(ValueError, match="batching"):
        BaselineModel(tiny_trained_run_dir / "model", batching="dynamic")
