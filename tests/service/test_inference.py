"""Level 1: the inference leaf (`serving.inference`), called directly."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from serving.inference import (
    Classifier,
    ModelFileError,
    pad_batch,
    plan_sub_batches,
)
from tests.service.serving import REPO_ROOT


def test_inference_leaf_imports_only_numpy_onnxruntime_tokenizers():
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import serving.inference\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    new = set(json.loads(out.stdout.splitlines()[-1]))
    heavy = {"bentoml", "torch", "transformers", "pydantic", "starlette", "optimum", "ray"}
    assert not new & heavy, new & heavy
    assert {"numpy", "onnxruntime", "tokenizers"} <= new


def test_sub_batches_cover_every_index_once_shortest_first():
    lengths = [9, 3, 7, 3, 12, 1, 5, 8, 2, 10]
    chunks = plan_sub_batches(lengths, max_texts=3, max_tokens=None)
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_sub_batches_respect_the_token_budget():
    lengths = [4] * 20 + [100, 120]
    chunks = plan_sub_batches(lengths, max_texts=32, max_tokens=64)
    for chunk in chunks:
        padded = len(chunk) * max(lengths[i] for i in chunk)
        assert padded <= 64 or len(chunk) == 1  # a text over the budget runs alone
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(lengths)))
    # the two long texts do not pad the short ones
    assert all(max(lengths[i] for i in c) == 4 for c in chunks if min(lengths[i] for i in c) == 4)


def test_sub_batches_split_a_batch_over_parallel_processes():
    lengths = [10] * 32
    assert len(plan_sub_batches(lengths, max_texts=32, max_tokens=4096, parts=1)) == 1
    halves = plan_sub_batches(lengths, max_texts=32, max_tokens=4096, parts=2)
    assert [len(c) for c in halves] == [16, 16]
    assert len(plan_sub_batches([10], parts=2)) == 1


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
    probs = np.array([[p["scores"][label] for label in reference.labels] for p in predictions])
    # Static activation scales: sorting, sub-batching and padding change nothing (float noise).
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert [p["label"] for p in predictions] == [reference.labels[k] for k in expected.argmax(1)]
    assert [p["label"] for p in predictions] == [r["label"] for r in review_rows]


def test_sorting_and_shuffling_do_not_change_answers(classifier, review_rows):
    texts = [r["text"] for r in review_rows]
    sorted_run = classifier.predict(texts, sort=True)
    unsorted_run = classifier.predict(texts, sort=False)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = classifier.predict([texts[i] for i in perm])
    for a, b in zip(sorted_run, unsorted_run, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)
    for j, i in enumerate(perm):
        assert shuffled[j]["label"] == sorted_run[i]["label"]
        assert shuffled[j]["score"] == pytest.approx(sorted_run[i]["score"], abs=1e-5)


def test_probabilities_sum_to_one_with_the_models_labels(classifier, review_rows):
    for p in classifier.predict([r["text"] for r in review_rows]):
        assert set(p["scores"]) == {"negative", "positive"} == set(classifier.labels)
        assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["score"] == max(p["scores"].values()) and p["scores"][p["label"]] == p["score"]


def test_long_text_is_truncated_to_the_model_window(classifier, tiny_model_path):
    max_length = json.loads((tiny_model_path / "model_config.json").read_text())["max_length"]
    long_text = "the film was great and " * 500
    (encoding,) = classifier.encode([long_text])
    assert len(encoding.ids) == max_length and encoding.overflowing
    (prediction,) = classifier.predict([long_text])
    assert prediction["label"] == "positive"


def test_labels_come_from_the_label_map(classifier):
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    renamed = Classifier(None, classifier.tokenizer, ["neg", "pos"], classifier.input_names)
    preds = renamed.predictions(probs)
    assert [p["label"] for p in preds] == ["neg", "pos"]
    assert preds[1]["scores"] == pytest.approx({"neg": 0.2, "pos": 0.8})


def test_missing_model_file_is_named(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="tokenizer.json, model_config.json"):
        Classifier.from_dir(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model_config.json", "{not json", r"model_config\.json: not a readable JSON file"),
        (
            "model_config.json",
            '{"labels": [], "max_length": 8, "input_names": ["input_ids"]}',
            r"model_config\.json: 'labels' must be",
        ),
        ("tokenizer.json", "{}", r"tokenizer\.json: not a valid tokenizer\.json"),
        ("model.onnx", "garbage", r"model\.onnx: ONNX Runtime cannot load it"),
    ],
)
def test_corrupt_model_file_is_named(tmp_path, tiny_model_path, name, content, message):
    import shutil

    for file in ("model.onnx", "tokenizer.json", "model_config.json"):
        shutil.copy(tiny_model_path / file, tmp_path / file)
    (tmp_path / name).write_text(content)
    with pytest.raises(ModelFileError, match=message):
        Classifier.from_dir(tmp_path)
