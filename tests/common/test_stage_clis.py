"""Every stage CLI builds its config with `common.cli.config_from_args`: without flags it is the
config class's own defaults (a flag that restated a default would drift from it), and a flag
sets its field. What each stage then does with its config is tested in the stage's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


class Captured(Exception):
    """Raised by a stand-in for a stage's run function, carrying the config it was given."""

    def __init__(self, config) -> None:
        self.config = config


def capture(config, *args, **kwargs):
    raise Captured(config)


def test_training(monkeypatch, tmp_path):
    import training
    from training.__main__ import main
    from training.config import TrainConfig

    monkeypatch.setattr(training, "run_training", capture)
    with pytest.raises(Captured) as got:
        main([])
    assert got.value.config == TrainConfig()
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 2\nseed: 7\n")
    with pytest.raises(Captured) as got:
        main(["--config", str(config), "--seed", "8", "--no-checkpoint-soup", "--quick"])
    assert got.value.config == TrainConfig(epochs=2, seed=8, checkpoint_soup=False, quick=True)


def test_export():
    from export.__main__ import parse_args
    from export.config import ExportConfig

    assert parse_args([]) == (Path("runs/latest"), ExportConfig())
    run_dir, config = parse_args(["r", "--name", "m", "--no-smooth", "--operators", "MatMul"])
    assert (run_dir, config) == (
        Path("r"),
        ExportConfig(model_name="m", smooth=False, operators_to_quantize=["MatMul"]),
    )


def test_scoring():
    from scoring.__main__ import parse_args
    from scoring.config import ScoringConfig

    required = ["in.csv", "--text-column", "t", "-o", "out.csv"]
    assert parse_args(required) == ScoringConfig("in.csv", "out.csv", "t")
    assert parse_args([*required, "--retries", "0", "--no-progress"]) == ScoringConfig(
        "in.csv", "out.csv", "t", retries=0, progress=False
    )


def test_monitoring_report(monkeypatch):
    import monitoring.report
    from monitoring.__main__ import main
    from monitoring.report import ReportConfig

    monkeypatch.setattr(monitoring.report, "write_report", capture)
    with pytest.raises(Captured) as got:
        main(["report", "--logs", "a,b", "--logs", "c", "--profile", "p.json"])
    assert got.value.config == ReportConfig(logs=["a", "b", "c"], profile="p.json")
    with pytest.raises(Captured) as got:
        main(["report", "--logs", "a", "--model", "m:1", "--threshold", "0.5"])
    assert got.value.config == ReportConfig(logs=["a"], model="m:1", threshold=0.5)


def test_benchmark(monkeypatch):
    import loadtest.bench.__main__ as bench
    from loadtest.bench.config import BenchConfig

    monkeypatch.setattr(bench, "run_bench", capture)
    monkeypatch.delenv("MODEL_TAG", raising=False)
    with pytest.raises(Captured) as got:
        bench.main([])
    assert got.value.config == BenchConfig()
    with pytest.raises(Captured) as got:
        bench.main(["--smoke", "--connections", "1,2", "--no-peer", "--env", "WORKERS=2"])
    assert got.value.config == BenchConfig.smoke(
        connections=(1, 2), peer=False, service_env={"WORKERS": "2"}
    )
    monkeypatch.setenv("MODEL_TAG", "from-env:1")  # as the service reads it
    with pytest.raises(Captured) as got:
        bench.main([])
    assert got.value.config.model_tag == "from-env:1"
    with pytest.raises(Captured) as got:
        bench.main(["--model-tag", "flag:2"])
    assert got.value.config.model_tag == "flag:2"
