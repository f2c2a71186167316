"""Traffic generation and answer checks, without a server."""

from __future__ import annotations

import bz2
import random

import pytest

from loadtest.traffic import (
    FALLBACK_TEXTS,
    check_answer,
    load_labels,
    load_texts,
    parse_sizes,
    sample_request,
)

LABELS = ["negative", "positive"]


def good(label="positive", p=0.9):
    return {"label": label, "score": p, "scores": {"negative": 1 - p, "positive": p}}


def test_texts_from_a_run_dir_keep_every_split(tiny_run_dir):
    texts = load_texts(tiny_run_dir)
    assert len(texts) == 120  # 3 splits x 40 rows
    assert load_labels(tiny_run_dir) == LABELS


def test_texts_from_the_raw_corpus_keep_reviews_only(tmp_path):
    path = tmp_path / "corpus.csv.bz2"
    rows = 'category,text,movie_name\nplot,"A long plot summary.",m\nfresh,"Great, fun.",m\n'
    rows += 'rotten,"Dull.",m\nfresh,"  ",m\n'
    path.write_bytes(bz2.compress(rows.encode()))
    assert load_texts(path) == ["Great, fun.", "Dull."]


def test_missing_source_falls_back_or_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr("loadtest.traffic.default_source", lambda: None)
    assert load_texts() == list(FALLBACK_TEXTS)
    assert load_labels() == LABELS
    with pytest.raises(FileNotFoundError, match="data/"):
        load_texts(tmp_path)
    with pytest.raises(ValueError, match="expected a run directory"):
        load_texts(tmp_path / "texts.txt")


def test_sizes_and_samples():
    assert parse_sizes("8") == [8]
    assert parse_sizes("1,1,8") == [1, 1, 8]
    for bad in ("", "0", "a,8"):
        with pytest.raises(ValueError, match="texts per request"):
            parse_sizes(bad)
    rng = random.Random(0)
    seen = {len(sample_request(rng, ["a", "b", "c"], [1, 8])) for _ in range(50)}
    assert seen == {1, 8}
    assert set(sample_request(rng, ["a", "b"], [8])) <= {"a", "b"}


def test_check_answer_accepts_the_contract_and_names_each_breach():
    assert check_answer(200, [good(), good("negative", 0.8)], 2, LABELS) is None
    assert check_answer(503, None, 1, LABELS) == "HTTP 503"
    assert "not a list" in check_answer(200, {"label": "positive"}, 1, LABELS)
    assert "1 results for 2 texts" in check_answer(200, [good()], 2, LABELS)
    assert "unknown label" in check_answer(200, [good("neutral")], 1, LABELS)
    assert "not a probability" in check_answer(200, [{**good(), "score": 1.5}], 1, LABELS)
    assert "do not cover" in check_answer(200, [{**good(), "scores": {"positive": 0.9}}], 1, LABELS)
