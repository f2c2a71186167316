"""`python -m experiments.tradeoff`: the accuracy-vs-speed table of stored models, on the tiny
model."""

from __future__ import annotations

import json

import pytest

from experiments.tradeoff import main

pytestmark = pytest.mark.slow


def test_tradeoff_table_of_a_stored_model(tiny_bento_model, tiny_trained_run_dir, tmp_path, capsys):
    out = tmp_path / "tradeoff.json"
    assert (
        main([str(tiny_bento_model), "--rows", str(tiny_trained_run_dir), "--json", str(out)]) == 0
    )
    table = capsys.readouterr().out
    assert f"| {tiny_bento_model} |" in table
    (row,) = json.loads(out.read_text())["models"]
    assert row["test_accuracy"] >= 0.9 and 0.9 <= row["test_macro_f1"] <= 1
    assert row["texts_per_s"] > 0 and row["p50_one_text_ms"] > 0 and row["size_mb"] > 0
    assert row["distilled"] is False
