"""`python -m experiments.mcnemar`: stored models and run dirs answer the same rows, paired
test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.mcnemar import main, mcnemar


def test_mcnemar_counts_and_exact_p_value():
    from scipy.stats import binomtest

    base = np.array([True] * 80 + [True] * 2 + [False] * 10 + [False] * 8)
    other = np.array([True] * 80 + [False] * 2 + [True] * 10 + [False] * 8)
    result = mcnemar(base, other)
    assert result == {
        "rows": 100,
        "both_right": 80,
        "base_only_right": 2,
        "other_only_right": 10,
        "both_wrong": 8,
        "accuracy_gain_points": 8.0,
        "p_value": pytest.approx(binomtest(10, 12, 0.5).pvalue),
    }
    assert result["p_value"] == pytest.approx(0.0386, abs=1e-4)  # 2 * P(X <= 2), X ~ B(12, 1/2)
    assert mcnemar(base, base)["p_value"] == 1.0  # no discordant rows


def test_stored_int8_against_its_run(tiny_bento_model, tiny_trained_run_dir, tmp_path, capsys):
    """The INT8 stored model against the FP32 run it came from, on the run's test rows."""
    import bentoml

    out = tmp_path / "report.json"
    code = main([str(tiny_trained_run_dir), str(tiny_bento_model), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["n"] == 40 and report["rows"].endswith("data/test.jsonl")
    base, stored = report["models"]
    assert (base["kind"], stored["kind"]) == ("run", "stored")
    meta = bentoml.models.get(tiny_bento_model).info.metadata
    # the stored model answers as export measured it, the run dir as its FP32 model
    assert stored["accuracy"] == pytest.approx(meta["metrics"]["model"]["test"]["accuracy"])
    assert base["accuracy"] == pytest.approx(meta["metrics"]["fp32"]["test"]["accuracy"])
    v = stored["vs_base"]
    assert v["both_right"] + v["base_only_right"] + v["other_only_right"] + v["both_wrong"] == 40
    assert "p (exact)" in capsys.readouterr().out


def test_models_of_another_split_are_refused(tiny_trained_run_dir, tmp_path, capsys):
    import shutil

    other = tmp_path / "other-run"
    shutil.copytree(tiny_trained_run_dir, other)
    info = json.loads((other / "run_info.json").read_text())
    info["data_fingerprint"] = "f" * 64
    (other / "run_info.json").write_text(json.dumps(info))
    assert main([str(tiny_trained_run_dir), str(other)]) == 2
    assert "trained on another data split" in capsys.readouterr().err
    assert main([str(tiny_trained_run_dir), "no-such-model:v1"]) == 2
    assert "neither a run directory nor a stored model" in capsys.readouterr().err
