"""Fixtures for the monitoring tests: a tiny model whose run has held-out splits large enough
for a drift verdict (400 validation and 400 test rows instead of 40), exported as usual."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.tiny import LABELS, tiny_dataset, write_jsonl

SPLIT_ROWS = 400


@pytest.fixture(scope="session")
def monitored_run_dir(tmp_path_factory, tiny_trained_run_dir) -> Path:
    """`tiny_trained_run_dir` (same trained model, same training rows) with 400-row validation
    and test splits drawn from the same generator."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-monitored-run"
    shutil.copytree(tiny_trained_run_dir, run_dir)
    label_id = {name: i for i, name in enumerate(LABELS)}
    for split, seed in [("validation", 101), ("test", 102)]:
        rows = [
            {"text": r["text"], "label": label_id[r["label"]]}
            for r in tiny_dataset(SPLIT_ROWS, seed)
        ]
        write_jsonl(run_dir / "data" / f"{split}.jsonl", rows)
    info = json.loads((run_dir / "run_info.json").read_text())
    info["run_id"] = "tiny-monitored-run"
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2))
    return run_dir


@pytest.fixture(scope="session")
def monitored_model(monitored_run_dir):
    """The stored model (with its reference profile) exported from `monitored_run_dir`."""
    from export import ExportConfig, export_run

    return export_run(monitored_run_dir, ExportConfig(optimize="off"))


@pytest.fixture(scope="session")
def monitored_model_dir(monitored_model) -> Path:
    import bentoml

    return Path(bentoml.models.get(monitored_model).path)


def read_split(run_dir: Path, split: str) -> list[str]:
    lines = (run_dir / "data" / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]
