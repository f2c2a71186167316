"""Run an ONNX classifier the way the service does (tokenizers + onnxruntime) and score it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from common.metrics import classification_metrics


def load_tokenizer(tokenizer_path: Path, max_length: int):
    """The fast tokenizer as it is stored and served: truncating to `max_length`, no padding
    (the runtime pads each length-sorted sub-batch to its own longest text)."""
    from serving.inference import load_tokenizer as runtime_tokenizer

    return runtime_tokenizer(tokenizer_path, max_length)


def make_session(onnx_path: Path, threads: int | None = None):
    """An onnxruntime CPU session as the service makes it, `threads` intra-op threads."""
    from serving.inference import available_cpus
    from serving.inference import make_session as runtime_session

    return runtime_session(onnx_path, threads or available_cpus())


class OnnxClassifier:
    """tokenizer.json + model.onnx -> class probabilities, through the service's own inference
    code (`serving.inference.Classifier`: length-sorted, per-sub-batch padding)."""

    def __init__(self, onnx_path: Path, tokenizer, threads: int | None = None):
        from serving.inference import Classifier

        session = make_session(onnx_path, threads)
        num_labels = session.get_outputs()[0].shape[-1]
        self.runtime = Classifier(
            session,
            tokenizer,
            labels=[str(i) for i in range(num_labels)],
            input_names=[i.name for i in session.get_inputs()],
        )
        self.input_names = self.runtime.input_names

    def predict_proba(self, texts: list[str], batch_size: int = 8) -> np.ndarray:
        """Softmax probabilities [len(texts), num_labels] in input order, run in length-sorted
        batches of `batch_size` (a speed setting: the export's invariance gate holds a stored
        model's answers to not depend on how texts are batched)."""
        if not texts:
            raise ValueError("predict_proba needs at least one text")
        self.runtime.sub_batch_size = batch_size
        return self.runtime.probabilities(self.runtime.encode(texts))

    def throughput(self, texts: list[str], batch_size: int = 8, repeats: int = 1) -> float:
        """Texts per second over length-sorted batches of `batch_size` (after a warm-up batch)."""
        self.predict_proba(texts[:batch_size], batch_size)
        start = time.perf_counter()
        for _ in range(repeats):
            self.predict_proba(texts, batch_size)
        return repeats * len(texts) / (time.perf_counter() - start)


def compare(fp32_probs: np.ndarray, int8_probs: np.ndarray) -> dict:
    """How closely the INT8 model follows the FP32 one."""
    return {
        "agreement": float(np.mean(fp32_probs.argmax(1) == int8_probs.argmax(1))),
        "max_prob_diff": float(np.max(np.abs(fp32_probs - int8_probs))),
        "mean_prob_diff": float(np.mean(np.abs(fp32_probs - int8_probs))),
    }


def evaluate_onnx(classifier: OnnxClassifier, rows: list[dict], batch_size: int = 8) -> dict:
    """Metrics of `classifier` on `{"text", "label"}` rows, plus its probabilities (key "probs")."""
    probs = classifier.predict_proba([r["text"] for r in rows], batch_size)
    labels = np.array([r["label"] for r in rows])
    names = [str(i) for i in range(probs.shape[1])]
    metrics = classification_metrics(labels, probs, names)
    metrics["n"] = metrics.pop("support")
    return {**metrics, "probs": probs}
