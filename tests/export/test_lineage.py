"""Lineage in MLflow, end to end on a tiny model: `python -m training --report-to mlflow`, then
`python -m export` of that run dir; one MLflow run holds both, and the stored model names it."""

from __future__ import annotations

import json
import types

import pytest

from tests.tiny import tiny_dataset, write_jsonl

pytestmark = pytest.mark.slow

MODEL_NAME = "lineage-test"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, tiny_model_dir):
    """(tracking URI, run dir, stored tag): a tracked training run and its export, both by CLI,
    into a SQLite store in a temp folder (and the session's temp BENTOML_HOME)."""
    import bentoml

    from export.__main__ import main as export_main
    from training.__main__ import main as train_main

    tmp = tmp_path_factory.mktemp("lineage")
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    (tmp / "store").mkdir()
    data = write_jsonl(tmp / "reviews.jsonl", tiny_dataset(120, seed=3))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        env.setenv("MLFLOW_RUN_ID", "not-a-run")  # would make the Trainer's callback start a run
        code = train_main(
            [
                *("--dataset", str(data), "--model", str(tiny_model_dir)),
                *("--max-length", "32", "--epochs", "3", "--batch-size", "8"),
                *("--learning-rate", "2e-3", "--warmup-ratio", "0", "--num-threads", "1"),
                *("--output-dir", str(tmp / "runs"), "--run-name", "tracked"),
                *("--report-to", "mlflow"),
            ]
        )
        assert code == 0
    run_dir = tmp / "runs" / "latest"
    # export finds the MLflow run from run_info.json alone: no MLFLOW_* variable needed
    args = [str(run_dir), "--name", MODEL_NAME, "--optimize", "off", "--max-accuracy-drop", "100"]
    assert export_main(args) == 0
    (model,) = bentoml.models.list(MODEL_NAME)
    return uri, run_dir.resolve(), str(model.tag)


@pytest.fixture(scope="module")
def client(tracked):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracked[0])


@pytest.fixture(scope="module")
def mlflow_run(tracked, client):
    info = json.loads((tracked[1] / "run_info.json").read_text())
    return client.get_run(info["mlflow"]["run_id"])


def test_run_info_names_the_mlflow_run(tracked, client, mlflow_run):
    uri, run_dir, _ = tracked
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["mlflow"] == {
        "tracking_uri": uri,
        "experiment_id": mlflow_run.info.experiment_id,
        "run_id": mlflow_run.info.run_id,
    }
    # one run in the whole store: the Trainer's callback logged into ours, not into one of its own
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert [r.info.run_id for r in client.search_runs(experiments)] == [mlflow_run.info.run_id]
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.run_name == run_dir.name
    assert client.get_experiment(mlflow_run.info.experiment_id).name == "sentiment-classifier"
    # artifacts beside the database, not in the current folder's ./mlruns
    assert mlflow_run.info.artifact_uri.startswith(str(run_dir.parents[1] / "store" / "mlruns"))


def test_training_is_recorded(tracked, client, mlflow_run):
    run_dir = tracked[1]
    info = json.loads((run_dir / "run_info.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    params, tags, final = mlflow_run.data.params, mlflow_run.data.tags, mlflow_run.data.metrics
    # the config, the data fingerprint
    assert params["config.learning_rate"] == "0.002" and params["config.report_to"] == "mlflow"
    assert params["config.max_length"] == "32" and params["config.epochs"] == "3.0"
    assert params["data_fingerprint"] == tags["data_fingerprint"] == info["data_fingerprint"]
    assert tags["run_dir"] == str(run_dir)
    assert tags["base_model"] == info["base_model"]
    assert params["num_train_epochs"] == "3.0"  # the Trainer's own arguments, from its callback
    # metrics per evaluation (the Trainer's MLflowCallback), and the training loss
    evals = client.get_metric_history(mlflow_run.info.run_id, "eval_macro_f1")
    assert len(evals) == 3 and [m.step for m in evals] == sorted(m.step for m in evals)
    assert client.get_metric_history(mlflow_run.info.run_id, "loss")
    # the final metrics, as in metrics.json
    for split in ("validation", "test"):
        for key in ("accuracy", "macro_f1", "roc_auc"):
            assert final[f"{split}.{key}"] == pytest.approx(metrics[split][key])
    assert final["train_seconds"] == pytest.approx(metrics["train_seconds"])
    # the plots and the run's records
    assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "plots")} == {
        "plots/curves.png",
        "plots/confusion_test.png",
    }
    records = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "run")}
    assert records == {"run/run_info.json", "run/metrics.json", "run/config.yaml"}


def test_export_is_recorded_in_the_same_run(tracked, client, mlflow_run):
    import bentoml

    tag = tracked[2]
    meta = bentoml.models.get(tag).info.metadata
    final, tags = mlflow_run.data.metrics, mlflow_run.data.tags
    for key in ("fp32", "model"):  # FP32 and the stored INT8 graph
        for split in ("validation", "test"):
            assert (
                final[f"export.{key}.{split}.accuracy"] == meta["metrics"][key][split]["accuracy"]
            )
    assert final["export.agreement.test.agreement"] == meta["agreement"]["test"]["agreement"]
    assert final["export.gate.passed"] == 1.0
    assert tags["export.gate"] == "passed"
    assert tags["export.invariance"] == "passed"
    assert final["export.invariance.passed"] == 1.0 and final["export.invariance.max_diff"] <= 1e-5
    assert final["export.size_bytes.model"] == meta["size_bytes"]["model"]
    # the graph settings
    assert tags["export.quantized"] == "true"
    assert tags["export.quantization.per_channel"] == "true"
    assert tags["export.quantization.isa"] == meta["quantization"]["isa"]
    assert tags["export.config.optimize"] == "off"
    assert tags["export.optimization.applied"] == "false"
    # the stored tag, and the whole metadata as an artifact
    assert tags["bentoml_tag"] == tags["bentoml_tags"] == tag
    version = tag.split(":")[1]
    path = client.download_artifacts(mlflow_run.info.run_id, f"export/{version}/metadata.json")
    with open(path) as f:
        assert json.load(f)["tag"] == tag


def test_stored_model_names_the_run(tracked, mlflow_run):
    """From a served tag to the training run (and its data fingerprint): the other direction."""
    import bentoml

    uri, run_dir, tag = tracked
    meta = bentoml.models.get(tag).info.metadata
    assert meta["mlflow"] == {
        "tracking_uri": uri,
        "experiment_id": mlflow_run.info.experiment_id,
        "run_id": mlflow_run.info.run_id,
    }
    assert meta["data_fingerprint"] == mlflow_run.data.params["data_fingerprint"]
    assert meta["run_id"] == run_dir.name == mlflow_run.info.run_name


def test_a_second_export_keeps_the_first(tracked, client, mlflow_run):
    import bentoml

    from export.__main__ import main as export_main

    _, run_dir, first = tracked
    assert (
        export_main([str(run_dir), "--name", MODEL_NAME, "--optimize", "off", "--no-quantize"]) == 0
    )
    second = next(str(m.tag) for m in bentoml.models.list(MODEL_NAME) if str(m.tag) != first)
    run = client.get_run(mlflow_run.info.run_id)
    assert run.data.tags["bentoml_tag"] == second  # the latest
    assert run.data.tags["bentoml_tags"] == f"{first},{second}"
    assert run.data.tags["export.quantized"] == "false"
    history = client.get_metric_history(run.info.run_id, "export.model.test.accuracy")
    assert [m.step for m in history] == [0, 1]  # one step per export


def test_export_without_mlflow_record_does_nothing():
    from export.pipeline import _record_in_mlflow

    run = types.SimpleNamespace(info={"run_id": "r"})
    assert _record_in_mlflow(run, "m:v", {}) is None


def test_export_warns_when_the_run_cannot_be_reached(monkeypatch, caplog):
    """The model is stored by then: a failure to record is a warning and the summary says so."""
    from export import pipeline

    def unreachable(record, tag, metadata):
        raise ConnectionError("tracking server down")

    monkeypatch.setattr(pipeline, "record_export", unreachable)
    record = {"tracking_uri": "http://127.0.0.1:9", "experiment_id": "1", "run_id": "abc"}
    run = types.SimpleNamespace(info={"run_id": "r", "mlflow": record})
    note = pipeline._record_in_mlflow(run, "m:v", {})
    assert note == "NOT recorded in run abc (http://127.0.0.1:9): tracking server down"
    assert "could not record m:v in MLflow run abc (http://127.0.0.1:9)" in caplog.text


def test_export_warns_on_a_broken_record(caplog):
    from export.pipeline import _record_in_mlflow

    run = types.SimpleNamespace(info={"run_id": "r", "mlflow": {"run_id": "abc"}})
    assert _record_in_mlflow(run, "m:v", {}).startswith("NOT recorded in run abc (?): the mlflow")
