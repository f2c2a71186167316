"""Lineage in MLflow: a training run and its exports share one MLflow run (docs/tracking.md).

Training (`--report-to mlflow`) opens the run, lets the Trainer's own MLflowCallback log its
per-evaluation metrics into it, adds the config, data fingerprint, final metrics and plots, and
writes `{"tracking_uri", "experiment_id", "run_id"}` into run_info.json under `mlflow`. Export
reads that record, stores it in the BentoML model's metadata and logs its figures, the gate's
verdict, the graph settings and the stored tag into the same run.

mlflow is imported only when tracking is asked for; nothing here runs on import.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from numbers import Real
from pathlib import Path

logger = logging.getLogger(__name__)

# MLflow's own default: `mlflow ui` (or `mlflow server`) started in the same folder finds it.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "sentiment-classifier"
# Variables of the Trainer's MLflowCallback that would start a second (or nested) run.
_CALLBACK_RUN_VARS = ("MLFLOW_RUN_ID", "MLFLOW_NESTED_RUN")
_TAG_VALUE_MAX = 5000  # MLflow allows 8,000 characters in a tag value


@dataclass(frozen=True)
class MlflowRecord:
    """Where a training run's MLflow run lives: run_info.json's and the stored model's `mlflow`."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_info(cls, info: Mapping) -> MlflowRecord | None:
        """The record in a run_info.json (or a stored model's metadata), None if it has none."""
        record = info.get("mlflow")
        if not isinstance(record, Mapping):
            return None
        try:
            return cls(*(str(record[k]) for k in ("tracking_uri", "experiment_id", "run_id")))
        except KeyError as e:
            raise ValueError(f"the mlflow record {dict(record)} lacks {e.args[0]}") from None


def resolve_tracking_uri(uri: str | None = None) -> str:
    """`uri`, else MLFLOW_TRACKING_URI, else `DEFAULT_TRACKING_URI`; a relative SQLite path made
    absolute, so the record still points at the store when export runs from another folder."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    path = sqlite_path(uri)
    return f"sqlite:///{path}" if path is not None else uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///FILE` URI (absolute), None for any other store."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:"):
        return None
    return Path(uri[len(prefix) :]).expanduser().resolve()


def flatten(values: Mapping, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay whole (callers JSON them or drop them)."""
    out: dict[str, object] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def numeric(values: Mapping, prefix: str = "") -> dict[str, float]:
    """The numbers of `flatten(values)` (bools as 0 / 1) as MLflow metrics; lists left out."""
    return {
        key: float(value)
        for key, value in flatten(values, prefix).items()
        if isinstance(value, Real)
    }


def as_text(values: Mapping, prefix: str = "", flat: bool = True) -> dict[str, str]:
    """`flatten(values)` (or, not `flat`, one key per top-level entry, a dict as JSON) as MLflow
    param / tag strings; None and overlong values left out."""
    out = {}
    items = flatten(values, prefix) if flat else {f"{prefix}{k}": v for k, v in values.items()}
    for key, value in items.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) <= _TAG_VALUE_MAX:
            out[key] = text
    return out


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client, tracking_uri: str, name: str) -> str:
    """The experiment `name`, created if needed; with a local SQLite store its artifacts go to
    `mlruns/<name>` beside the database file (MLflow's default is relative to the cwd)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    db = sqlite_path(tracking_uri)
    if db is not None:
        location = str(db.parent / "mlruns" / re.sub(r"[^A-Za-z0-9._-]+", "_", name))
    return client.create_experiment(name, artifact_location=location)


class TrainingTracker:
    """The MLflow run of one training run (made by `start_training`)."""

    def __init__(self, record: MlflowRecord):
        self.record = record
        self._client = _client(record.tracking_uri)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Make the run the active one while the Trainer runs, so that its MLflowCallback (report_to
        "mlflow") logs the training and evaluation metrics into it rather than into a new run."""
        import mlflow

        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", *_CALLBACK_RUN_VARS)}
        os.environ["MLFLOW_TRACKING_URI"] = self.record.tracking_uri
        for name in _CALLBACK_RUN_VARS:
            os.environ.pop(name, None)
        try:
            # on an exception the run ends FAILED and the exception goes on
            with mlflow.start_run(run_id=self.record.run_id):
                yield
            # `with` ended it FINISHED; it stays open for finish()'s records
            self._client.update_run(self.record.run_id, status="RUNNING")
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def finish(self, metrics: Mapping, run_dir: Path) -> None:
        """Log the final metrics and the run dir's plots and records, and end the run."""
        from mlflow.entities import Metric

        run_id = self.record.run_id
        now = _now_ms()
        final = [Metric(k, v, now, 0) for k, v in numeric(metrics).items()]
        _log_batch(self._client, run_id, metrics=final)
        plots = run_dir / "plots"
        if plots.is_dir():
            self._client.log_artifacts(run_id, str(plots), "plots")
        for name in ("run_info.json", "metrics.json", "config.yaml"):
            if (run_dir / name).is_file():
                self._client.log_artifact(run_id, str(run_dir / name), "run")
        self._client.set_terminated(run_id, "FINISHED")

    def fail(self) -> None:
        self._client.set_terminated(self.record.run_id, "FAILED")


def start_training(
    run_dir: Path, config: Mapping, data_fingerprint: str, tags: Mapping[str, object] | None = None
) -> TrainingTracker:
    """Open the MLflow run of a training run: experiment MLFLOW_EXPERIMENT_NAME (default
    `sentiment-classifier`) in the store MLFLOW_TRACKING_URI (default `sqlite:///mlflow.db`,
    in the current folder), named after the run dir, with the config as `config.*` params."""
    from mlflow.entities import Param, RunTag

    uri = resolve_tracking_uri()
    client = _client(uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    experiment_id = _experiment_id(client, uri, name)
    all_tags = {
        "run_dir": str(run_dir.resolve()),
        "data_fingerprint": data_fingerprint,
        **as_text(tags or {}),
    }
    run = client.create_run(experiment_id, run_name=run_dir.name)
    # not flattened: a label map's raw values are data, not valid param names
    params = {**as_text(config, "config.", flat=False), "data_fingerprint": data_fingerprint}
    _log_batch(
        client,
        run.info.run_id,
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in all_tags.items()],
    )
    record = MlflowRecord(uri, experiment_id, run.info.run_id)
    logger.info("MLflow run %s in experiment %r at %s", record.run_id, name, uri)
    return TrainingTracker(record)


def record_export(record: MlflowRecord, tag: str, metadata: Mapping) -> None:
    """Log one export (the stored model's metadata) into the training run's MLflow run.

    Metrics `export.fp32.*` / `export.model.*` (the stored graph), agreement, gate, sizes and
    speeds, the batch-invariance gate (`export.invariance.*`), at step = how many exports the run had before, so a re-export keeps the history;
    tags `bentoml_tag` (the latest), `bentoml_tags` (all of them), `export.gate`, the graph
    settings (`export.quantization.*`, `export.optimization.*`, `export.config.*`); and the whole
    metadata as the artifact `export/<version>/metadata.json`.
    """
    import tempfile

    from mlflow.entities import Metric, RunTag

    client = _client(record.tracking_uri)
    run = client.get_run(record.run_id)  # raises if the run is not in that store
    previous = [t for t in run.data.tags.get("bentoml_tags", "").split(",") if t]
    step = len(previous)
    figures = {**metadata["metrics"]}  # "fp32" and "model" (the stored graph): split -> metrics
    figures.update({k: metadata[k] for k in ("agreement", "size_bytes", "texts_per_s")})
    figures["gate"] = {
        k: metadata["gate"][k] for k in ("accuracy_drop_points", "passed", "max_accuracy_drop")
    }
    invariance = metadata.get("invariance") or {}  # the batch-invariance gate, when it ran
    if invariance:
        figures["invariance"] = {
            k: invariance[k]
            for k in ("max_diff", "texts_over_tolerance", "label_flips", "passed", "tolerance")
            if k in invariance
        }
    metrics = numeric(figures, "export.")
    gate = metadata["gate"]
    verdict = "passed" if gate["passed"] else "failed, stored with --force"
    tags = {
        "bentoml_tag": tag,
        "bentoml_tags": ",".join([*previous, tag]),
        "export.gate": verdict,
        **(
            {"export.invariance": "passed" if invariance.get("passed") else "failed, stored anyway"}
            if invariance
            else {}
        ),
        "export.quantized": str(metadata["quantized"]).lower(),
        "export.git_sha": metadata.get("git_sha") or "",
        **as_text(_settings(metadata.get("quantization") or {}), "export.quantization."),
        **as_text(metadata.get("optimization") or {}, "export.optimization."),
        **as_text(metadata.get("export_config") or {}, "export.config."),
    }
    now = _now_ms()
    _log_batch(
        client,
        record.run_id,
        metrics=[Metric(k, v, now, step) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    version = tag.split(":", 1)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metadata.json"
        path.write_text(json.dumps({"tag": tag, **metadata}, indent=2, default=str))
        client.log_artifact(record.run_id, str(path), f"export/{version}")
    logger.info("recorded %s in MLflow run %s", tag, record.run_id)


def _log_batch(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    """`client.log_batch` in chunks of 100 (MLflow's limit on params and tags per call)."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    for i in range(0, max(len(metrics), len(params), len(tags), 1), 100):
        client.log_batch(
            run_id, metrics=metrics[i : i + 100], params=params[i : i + 100], tags=tags[i : i + 100]
        )


def _settings(quantization: Mapping) -> dict:
    """The quantization settings without the smoothing's per-MatMul table (kept in the artifact)."""
    out = dict(quantization)
    smoothing = out.get("smoothing")
    if isinstance(smoothing, Mapping):
        out["smoothing"] = {k: v for k, v in smoothing.items() if not isinstance(v, list | dict)}
    return out


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
