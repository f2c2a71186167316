"""`python -m experiments.scoring_engines` end to end on the tiny model: the command behind
the README's engine figures keeps working (real `bentoml serve`, real local Ray, real CLI runs)."""

from __future__ import annotations

import json

import pytest

from experiments.scoring_engines import break_even, main

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.ray]


def test_break_even():
    assert break_even(c_ray=6.0, r_ray=1000, c_http=1.0, r_http=500) == 5000
    assert break_even(c_ray=6.0, r_ray=400, c_http=1.0, r_http=500) == float("inf")


def test_compare_smoke(tiny_trained_run_dir, tiny_bento_model, tmp_path):
    report = main(
        [
            "--data",
            str(tiny_trained_run_dir / "data" / "*.jsonl"),
            "--model-tag",
            str(tiny_bento_model),
            "--actors",
            "1",
            "--batch-sizes",
            "32",
            "--tiny",
            "8",
            "--repeat",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    n = report["rows"]
    assert n == 200 + 40 + 40  # the tiny run's splits
    assert report["http"]["full"]["rows"] == n and report["ray"][0]["full"]["rows"] == n
    assert report["ray"][0]["tiny"]["rows"] == 8
    assert report["ray_init_s"] > 0 and report["ray_cli_tiny_s"] > report["ray_init_s"]
    assert report["summary"]["ray_startup_s"] > 0 and "break_even_rows_cli" in report["summary"]
    saved = json.loads((tmp_path / "scoring-engines.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(report["summary"]))
    md = (tmp_path / "scoring-engines.md").read_text()
    assert "| Ray Data, local | 1 actor(s), batch 32 |" in md and "Break-even" in md
