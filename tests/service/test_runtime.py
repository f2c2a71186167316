"""Level 1: the inference functions, called directly (no server)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from sentiment_runtime import (
    Classifier,
    ServiceConfig,
    StoredModel,
    length_sorted_chunks,
    pad_batch,
    postprocess,
    text_list_type,
)


def test_length_sorted_chunks_cover_every_index_once_shortest_first():
    lengths = [9, 3, 7, 3, 12, 1, 5, 8, 2, 10]
    chunks = length_sorted_chunks(lengths, 3)
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_pad_batch_pads_to_its_own_longest(classifier):
    encodings = classifier.encode(["great", "the movie was really quite awful and dull"])
    feeds = pad_batch(encodings, classifier.input_names, classifier.pad_id)
    width = max(len(e.ids) for e in encodings)
    assert set(feeds) == set(classifier.input_names)
    assert all(a.shape == (2, width) and a.dtype == np.int64 for a in feeds.values())
    assert feeds["attention_mask"].sum(axis=1).tolist() == [len(e.ids) for e in encodings]
    assert (feeds["input_ids"][0, len(encodings[0].ids) :] == classifier.pad_id).all()


def test_predictions_in_input_order_match_onnxruntime(classifier, reference, review_rows):
    texts = [r["text"] for r in review_rows]
    predictions = classifier.predict(texts)
    expected = reference(texts)
    probs = np.array([[p.scores[label] for label in reference.labels] for p in predictions])
    # INT8 activations are quantized per batch, so padding moves probabilities a little.
    np.testing.assert_allclose(probs, expected, atol=0.02)
    assert [p.label for p in predictions] == [reference.labels[k] for k in expected.argmax(1)]
    assert [p.label for p in predictions] == [r["label"] for r in review_rows]


def test_sorting_and_shuffling_do_not_change_answers(classifier, review_rows):
    texts = [r["text"] for r in review_rows]
    sorted_run = classifier.predict(texts, sort=True)
    unsorted_run = classifier.predict(texts, sort=False)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = classifier.predict([texts[i] for i in perm])
    for a, b in zip(sorted_run, unsorted_run, strict=True):
        assert a.label == b.label and a.score == pytest.approx(b.score, abs=0.02)
    for j, i in enumerate(perm):
        assert shuffled[j].label == sorted_run[i].label
        assert shuffled[j].score == pytest.approx(sorted_run[i].score, abs=0.02)


def test_probabilities_sum_to_one_with_the_models_labels(classifier, review_rows):
    for p in classifier.predict([r["text"] for r in review_rows]):
        assert set(p.scores) == {"negative", "positive"} == set(classifier.labels)
        assert sum(p.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.score == max(p.scores.values()) and p.scores[p.label] == p.score


def test_long_text_is_truncated_to_the_model_window(classifier, tiny_model_path):
    import json

    max_length = json.loads((tiny_model_path / "model_config.json").read_text())["max_length"]
    long_text = "the film was great and " * 500
    (encoding,) = classifier.encode([long_text])
    assert len(encoding.ids) == max_length and encoding.overflowing
    (prediction,) = classifier.predict([long_text])
    assert prediction.label == "positive"


def test_postprocess_labels_from_the_label_map():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    preds = postprocess(probs, ["neg", "pos"])
    assert [p.label for p in preds] == ["neg", "pos"]
    assert preds[1].scores == pytest.approx({"neg": 0.2, "pos": 0.8})


def test_missing_model_file_is_named(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="tokenizer.json, model_config.json"):
        Classifier.from_dir(tmp_path)


def test_missing_model_says_how_to_make_one():
    from bentoml.exceptions import NotFound

    with pytest.raises(NotFound, match=r"sentiment-classifier:nope .*make model"):
        StoredModel("sentiment-classifier:nope").resolve()


def test_config_from_env_overrides_and_names_bad_values():
    config = ServiceConfig.from_env({"MAX_ITEMS": "8", "MODEL_TAG": "x:1", "ORT_THREADS": "0"})
    assert (config.max_items, config.model_tag, config.ort_threads) == (8, "x:1", 0)
    assert config.intra_op_threads() >= 1
    with pytest.raises(ValueError, match="MAX_BATCH_SIZE='many'"):
        ServiceConfig.from_env({"MAX_BATCH_SIZE": "many"})
    with pytest.raises(ValueError, match="WORKERS='0' must be positive"):
        ServiceConfig.from_env({"WORKERS": "0"})


@pytest.mark.parametrize(
    ("texts", "error"),
    [
        ([], "at least 1 item"),
        (["a"] * 5, "at most 4 items"),
        (["a" * 11], "at most 10 characters"),
        (["ok", " \n\t"], "empty or whitespace-only"),
        ([""], "at least 1 character"),
        (["ok", 3], "valid string"),
        ("just a string", "valid (list|array)"),
    ],
)
def test_request_limits_are_validated(texts, error):
    adapter = TypeAdapter(text_list_type(ServiceConfig(max_items=4, max_text_chars=10)))
    assert adapter.validate_python(["fine", "ok"]) == ["fine", "ok"]
    with pytest.raises(ValidationError, match=error):
        adapter.validate_python(texts)


def test_batch_wait_is_capped_after_a_burst(monkeypatch):
    from bentoml._internal.marshal.dispatcher import Optimizer

    # Start from BentoML's own method, even if the service was instantiated in this process.
    original = getattr(Optimizer, "uncapped_trigger_refresh", None) or Optimizer.trigger_refresh
    monkeypatch.setattr(Optimizer, "trigger_refresh", original)
    monkeypatch.setattr(Optimizer, "uncapped_trigger_refresh", None, raising=False)
    optimizer = Optimizer(max_latency=10.0)
    for _ in range(10):  # a burst: batches of 8 waited 2 s each in the queue
        optimizer.o_stat.append((8, 0.2, 2.0))
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(2.0)  # BentoML alone: lone requests now wait ~2 s

    from sentiment_runtime import cap_batch_wait

    assert cap_batch_wait(0.01)
    assert cap_batch_wait(0.01)  # idempotent: wraps BentoML's own method, not itself
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.01)
    assert optimizer.o_a > 0  # the latency model BentoML sheds by is still learned
    assert cap_batch_wait(0.5, min_wait_s=0.1)
    optimizer.o_stat.clear()
    optimizer.o_stat.append((1, 0.001, 0.0))  # an idle model: BentoML alone would wait 0 s
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.1)
