"""Export-stage fixtures: the trained tiny model as FP32 and INT8 ONNX, and PyTorch's answers."""

from __future__ import annotations

import numpy as np
import pytest

from export import ExportConfig, export_onnx, load_run_dir, load_tokenizer, quantize


@pytest.fixture(scope="session")
def run(tiny_trained_run_dir):
    return load_run_dir(tiny_trained_run_dir)


@pytest.fixture(scope="session")
def eval_rows(run) -> list[dict]:
    return run.rows("validation") + run.rows("test")


@pytest.fixture(scope="session")
def tokenizer(run):
    return load_tokenizer(run.model_dir / "tokenizer.json", run.max_length)


@pytest.fixture(scope="session")
def fp32_onnx(run, tmp_path_factory):
    return export_onnx(run.model_dir, tmp_path_factory.mktemp("fp32"))


@pytest.fixture(scope="session")
def int8_onnx(fp32_onnx, tmp_path_factory):
    """(path, settings) of the INT8 graph made with the default config."""
    return quantize(fp32_onnx, tmp_path_factory.mktemp("int8"), ExportConfig())


@pytest.fixture(scope="session")
def torch_probs(run, eval_rows) -> np.ndarray:
    """The PyTorch model's probabilities on `eval_rows` (the reference for parity)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(run.model_dir).eval()
    batch = tok(
        [r["text"] for r in eval_rows],
        padding=True,
        truncation=True,
        max_length=run.max_length,
        return_tensors="pt",
    )
    with torch.no_grad():
        return model(**batch).logits.softmax(-1).numpy()


@pytest.fixture(scope="session")
def static_onnx(fp32_onnx, run, tokenizer, tmp_path_factory):
    """(path, settings) of the INT8 graph with static activation scales (the export's default),
    calibrated on the tiny run's training texts."""
    from export.smooth import calibration_texts
    from export.static import static_quantize

    texts = calibration_texts(run.rows("train"), 64)
    return static_quantize(
        fp32_onnx, tmp_path_factory.mktemp("static"), ExportConfig(), tokenizer, texts
    )
