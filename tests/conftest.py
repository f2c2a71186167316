"""Shared fixtures. Nothing here touches the network, ~/bentoml or the real base model."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.tiny import LABELS, build_tiny_model, tiny_dataset, write_jsonl, write_run_info

# Set before anything imports bentoml / transformers / datasets: they read these on import.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-home-")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_sessionfinish(session, exitstatus):
    """Remove the temporary BentoML store made above (models, bentos, tmp files)."""
    import shutil

    shutil.rmtree(os.environ["BENTOML_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained 2-layer BERT + tokenizer in HF format."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A training run directory (the contract between training/ and export/) for the tiny model."""
    import shutil

    run_dir = tmp_path_factory.mktemp("runs") / "tiny-run"
    shutil.copytree(tiny_model_dir, run_dir / "model")
    label_id = {name: i for i, name in enumerate(LABELS)}
    for split, seed in [("train", 0), ("validation", 1), ("test", 2)]:
        rows = [{"text": r["text"], "label": label_id[r["label"]]} for r in tiny_dataset(40, seed)]
        write_jsonl(run_dir / "data" / f"{split}.jsonl", rows)
    write_run_info(run_dir, str(tiny_model_dir))
    return run_dir


@pytest.fixture(scope="session")
def tiny_trained_run_dir(tmp_path_factory, tiny_run_dir) -> Path:
    """`tiny_run_dir` with the model fine-tuned (a few seconds) so its predictions mean something:
    ~100% accuracy on the tiny validation/test rows, confident probabilities."""
    import shutil

    from tests.tiny import train_tiny_model

    run_dir = tmp_path_factory.mktemp("runs") / "tiny-trained-run"
    shutil.copytree(tiny_run_dir, run_dir)
    label_id = {name: i for i, name in enumerate(LABELS)}
    rows = [{"text": r["text"], "label": label_id[r["label"]]} for r in tiny_dataset(200, 10)]
    write_jsonl(run_dir / "data" / "train.jsonl", rows)
    train_tiny_model(run_dir / "model", rows)
    info = json.loads((run_dir / "run_info.json").read_text())
    info["run_id"] = "tiny-trained-run"
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2))
    return run_dir


@pytest.fixture(scope="session")
def tiny_bento_model(tiny_trained_run_dir):
    """`sentiment-classifier:<version>` INT8 model in the temp BentoML store, made by the export
    stage from the trained tiny run (no graph-optimization trial, to stay fast)."""
    from export import ExportConfig, export_run

    return export_run(tiny_trained_run_dir, ExportConfig(optimize="off"))


@pytest.fixture(scope="session")
def classify_server(tiny_bento_model):
    """Base URL (http://127.0.0.1:PORT) of a real `bentoml serve service:SentimentClassifier`
    serving `tiny_bento_model` from the temp store; waits for /readyz, stops at session end."""
    from tests.service.serving import BentoServer

    server = BentoServer("service:SentimentClassifier", env={"MODEL_TAG": str(tiny_bento_model)})
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()
