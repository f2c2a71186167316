"""Fixtures for the service tests: the stored tiny model, loaded directly and as a reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model_path(tiny_bento_model) -> Path:
    import bentoml

    return Path(bentoml.models.get(tiny_bento_model).path)


@pytest.fixture(scope="session")
def classifier(tiny_model_path):
    from serving.inference import Classifier

    return Classifier.from_dir(tiny_model_path, threads=1, sub_batch_size=4)


@pytest.fixture(scope="session")
def reference(tiny_model_path):
    """Probabilities straight from onnxruntime, one text at a time (no padding, no sorting)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    config = json.loads((tiny_model_path / "model_config.json").read_text())
    session = ort.InferenceSession(str(tiny_model_path / "model.onnx"))
    tokenizer = Tokenizer.from_file(str(tiny_model_path / "tokenizer.json"))
    tokenizer.enable_truncation(config["max_length"])
    tokenizer.no_padding()
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}

    def probabilities(texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            enc = tokenizer.encode(text)
            feeds = {
                n: np.array([getattr(enc, fields[n])], np.int64) for n in config["input_names"]
            }
            logits = session.run(None, feeds)[0][0].astype(np.float64)
            rows.append(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
        return np.array(rows)

    probabilities.labels = config["labels"]
    return probabilities


@pytest.fixture(scope="session")
def review_rows() -> list[dict]:
    """Tiny-dataset rows of mixed lengths (the trained tiny model gets their labels right)."""
    from tests.tiny import tiny_dataset

    return tiny_dataset(24, seed=7)
