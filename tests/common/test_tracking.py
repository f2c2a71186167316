"""The MLflow helpers without a store: where records go, how values become params and metrics,
and which trackers training offers. The end-to-end lineage is tests/export/test_lineage.py."""

from __future__ import annotations

import pytest

from common.tracking import MlflowRecord, as_text, numeric, resolve_tracking_uri


def test_default_store_is_mlflow_db_in_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///store/runs.db", "sqlite:///{tmp}/store/runs.db"),  # made absolute
        ("sqlite:////abs/runs.db", "sqlite:////abs/runs.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("databricks", "databricks"),
    ],
)
def test_tracking_uri_from_the_environment(tmp_path, monkeypatch, given, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", given)
    assert resolve_tracking_uri() == expected.format(tmp=tmp_path)


def test_record_reads_back_from_run_info():
    record = {"tracking_uri": "sqlite:////x/mlflow.db", "experiment_id": "1", "run_id": "abc"}
    assert MlflowRecord.from_info({"run_id": "r", "mlflow": record}).to_dict() == record
    assert MlflowRecord.from_info({"run_id": "r"}) is None  # an untracked run
    with pytest.raises(ValueError, match="lacks run_id"):
        MlflowRecord.from_info({"mlflow": {"tracking_uri": "x", "experiment_id": "1"}})


def test_values_become_metrics_and_params():
    values = {"test": {"accuracy": 0.9, "n": 12, "confusion_matrix": [[1, 0], [0, 1]]}, "ok": True}
    assert numeric(values, "export.") == {
        "export.test.accuracy": 0.9,
        "export.test.n": 12.0,
        "export.ok": 1.0,
    }
    config = {"label_map": {"très bon": "positive"}, "epochs": 3.0, "run_name": None, "a": "b"}
    # not flattened: a raw label value is no valid param name
    assert as_text(config, "config.", flat=False) == {
        "config.label_map": '{"tr\\u00e8s bon": "positive"}',
        "config.epochs": "3.0",
        "config.a": "b",
    }
    assert as_text({"q": {"per_channel": True, "ops": ["MatMul"]}}) == {
        "q.per_channel": "true",
        "q.ops": '["MatMul"]',
    }


def test_training_offers_only_tested_trackers(capsys):
    from training import TrainConfig
    from training.__main__ import parse_args

    assert parse_args(["--report-to", "mlflow"]).report_to == "mlflow"
    with pytest.raises(SystemExit):
        parse_args(["--report-to", "wandb"])
    assert "invalid choice: 'wandb'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="report_to must be one of none, mlflow"):
        TrainConfig(report_to="tensorboard").resolved()  # e.g. from a YAML file


def test_mlflow_stays_out_of_the_image():
    """Tracking is for training and export: the serve group and the image's lock never have it."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    groups = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(r.startswith("mlflow-skinny") for r in groups["train"])
    assert any(r.startswith("mlflow-skinny") for r in groups["export"])
    lock = (root / "docker" / "requirements.lock").read_text().lower()
    for name in ("mlflow", "sqlalchemy", "alembic"):
        assert not any(name in r for r in groups["serve"]) and name not in lock
