"""Run an ONNX classifier the way the service does (tokenizers + onnxruntime) and score it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def load_tokenizer(tokenizer_path: Path, max_length: int):
    """The fast tokenizer, truncating to `max_length` and padding each batch to its longest text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(max_length=max_length)
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token") or _find_pad_token(tokenizer)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token), pad_token=pad_token)
    return tokenizer


def _find_pad_token(tokenizer) -> str:
    for token in ("[PAD]", "<pad>", "<|pad|>"):
        if tokenizer.token_to_id(token) is not None:
            return token
    raise ValueError("the tokenizer has no padding token ([PAD] or <pad>)")


def make_session(onnx_path: Path, threads: int | None = None):
    """An onnxruntime CPU session with `threads` intra-op threads (default: all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class OnnxClassifier:
    """tokenizer.json + model.onnx -> class probabilities, in length-sorted batches."""

    def __init__(self, onnx_path: Path, tokenizer, threads: int | None = None):
        self.session = make_session(onnx_path, threads)
        self.tokenizer = tokenizer
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, texts: list[str]) -> np.ndarray:
        """Logits of one batch, padded to its own longest text."""
        encodings = self.tokenizer.encode_batch(texts)
        arrays = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self.session.run(None, {name: arrays[name] for name in self.input_names})[0]

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Softmax probabilities [len(texts), num_labels], in input order."""
        if not texts:
            raise ValueError("predict_proba needs at least one text")
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch(texts)]
        order = np.argsort(lengths, kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            logits = self.logits([texts[i] for i in idx])
            if out is None:
                out = np.empty((len(texts), logits.shape[1]), dtype=np.float32)
            out[idx] = softmax(logits)
        return out

    def throughput(self, texts: list[str], batch_size: int = 32, repeats: int = 1) -> float:
        """Texts per second over length-sorted batches of `batch_size` (after one warm-up batch)."""
        self.logits(texts[:batch_size])
        start = time.perf_counter()
        for _ in range(repeats):
            self.predict_proba(texts, batch_size)
        return repeats * len(texts) / (time.perf_counter() - start)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> dict:
    """Accuracy and macro-F1 (classes absent from both labels and predictions are skipped)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    f1s = []
    for c in range(num_labels):
        tp = int(np.sum((preds == c) & (labels == c)))
        fp = int(np.sum((preds == c) & (labels != c)))
        fn = int(np.sum((preds != c) & (labels == c)))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "accuracy": float(np.mean(labels == preds)),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "n": len(labels),
    }


def compare(fp32_probs: np.ndarray, int8_probs: np.ndarray) -> dict:
    """How closely the INT8 model follows the FP32 one."""
    return {
        "agreement": float(np.mean(fp32_probs.argmax(1) == int8_probs.argmax(1))),
        "max_prob_diff": float(np.max(np.abs(fp32_probs - int8_probs))),
        "mean_prob_diff": float(np.mean(np.abs(fp32_probs - int8_probs))),
    }


def evaluate_onnx(classifier: OnnxClassifier, rows: list[dict], batch_size: int = 32) -> dict:
    """Metrics of `classifier` on `{"text", "label"}` rows, plus its probabilities (key "probs")."""
    probs = classifier.predict_proba([r["text"] for r in rows], batch_size)
    labels = np.array([r["label"] for r in rows])
    metrics = classification_metrics(labels, probs.argmax(1), probs.shape[1])
    return {**metrics, "probs": probs}
