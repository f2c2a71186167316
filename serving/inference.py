"""Tokenize -> ONNX Runtime -> class probabilities, for the files of a stored model.

A leaf: numpy, onnxruntime and tokenizers, nothing else (no bentoml, no pydantic, no torch). The
service, export/ (to evaluate a model the way it is served), loadtest/ (the in-process limit)
and batch engines (Ray actors) all run this code, so they all give the same answers.

Texts are sorted by token length and run in length-homogeneous sub-batches bounded by a text
count and a token budget (rows x longest row), each padded only to its own longest text; the
probabilities come back in input order. Texts longer than the model window are truncated to it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

MODEL_FILES = ("model.onnx", "tokenizer.json", "model_config.json")
# Which tokenizers.Encoding field feeds which ONNX input.
ENCODING_FIELDS = {
    "input_ids": "ids",
    "attention_mask": "attention_mask",
    "token_type_ids": "type_ids",
}
DEFAULT_SUB_BATCH_SIZE = 8  # texts per ONNX Runtime call, at most (docs/results.md)
DEFAULT_SUB_BATCH_TOKENS = 256  # padded tokens (rows x longest row) per call, at most


class ModelFileError(ValueError):
    """A stored model's file is missing or unusable; the message names the file."""


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 quota (containers)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus or 1, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus or 1)


def read_model_config(path: str | Path) -> dict[str, Any]:
    """`model_config.json` (labels, max_length, input_names), checked; errors name the file."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got {type(config).__name__}")
    labels, max_length, inputs = (config.get(k) for k in ("labels", "max_length", "input_names"))
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ModelFileError(f"{path}: 'labels' must be a non-empty list of strings")
    if not (isinstance(max_length, int) and max_length > 0):
        raise ModelFileError(f"{path}: 'max_length' must be a positive integer")
    if not (isinstance(inputs, list) and inputs and set(inputs) <= set(ENCODING_FIELDS)):
        raise ModelFileError(
            f"{path}: 'input_names' must list model inputs among {sorted(ENCODING_FIELDS)}"
        )
    return config


def load_tokenizer(path: str | Path, max_length: int) -> Tokenizer:
    """The stored fast tokenizer, truncating to the model window and never padding."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception on a bad file
        raise ModelFileError(f"{path}: not a valid tokenizer.json ({e})") from None
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return tokenizer


def check_model_dir(path: str | Path) -> tuple[dict[str, Any], Tokenizer]:
    """The stored model's config and tokenizer, after checking that its files are all there and
    readable (a missing or corrupt file is named); the ONNX graph is loaded by `make_session`."""
    path = Path(path)
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"stored model at {path} lacks {', '.join(missing)}")
    config = read_model_config(path / "model_config.json")
    return config, load_tokenizer(path / "tokenizer.json", config["max_length"])


def pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>"):
        if (token_id := tokenizer.token_to_id(token)) is not None:
            return token_id
    return 0


def unk_id(tokenizer: Tokenizer) -> int | None:
    for token in ("[UNK]", "<unk>"):
        if (token_id := tokenizer.token_to_id(token)) is not None:
            return token_id
    return None


def make_session(
    model_path: str | Path, threads: int = 1, spinning: bool = False
) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads. No spin-waiting by default: other
    processes (HTTP, tokenization, other sessions) share these cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime errors have no importable type
        raise ModelFileError(f"{model_path}: ONNX Runtime cannot load it ({e})") from None


def plan_sub_batches(
    lengths: Sequence[int],
    max_texts: int = DEFAULT_SUB_BATCH_SIZE,
    max_tokens: int | None = DEFAULT_SUB_BATCH_TOKENS,
    parts: int = 1,
) -> list[np.ndarray]:
    """Indices grouped into length-homogeneous sub-batches, shortest texts first.

    Each sub-batch holds at most `max_texts` texts and, padded to its longest, at most
    `max_tokens` tokens (a text longer than the budget runs alone). With `parts` > 1 (parallel
    inference processes), the budget is also capped at an even share of the batch's tokens, so
    that a batch is split into about `parts` sub-batches of similar cost.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    budget = max_tokens or math.inf
    if parts > 1 and len(lengths) > 1:
        budget = min(budget, max(int(lengths.max()), math.ceil(lengths.sum() / parts)))
    chunks, start = [], 0
    for end in range(1, len(order) + 1):
        rows = end - start
        longest = lengths[order[end - 1]]
        if rows > 1 and (rows > max_texts or rows * longest > budget):
            chunks.append(order[start : end - 1])
            start = end - 1
    if start < len(order):
        chunks.append(order[start:])
    return chunks


def pad_batch(
    encodings: Sequence[Encoding], input_names: Sequence[str], pad: int = 0
) -> dict[str, np.ndarray]:
    """ONNX feeds for `encodings`, padded to their own longest one."""
    width = max(len(e.ids) for e in encodings)
    feeds = {}
    for name in input_names:
        attr = ENCODING_FIELDS[name]
        array = np.full((len(encodings), width), pad if name == "input_ids" else 0, np.int64)
        for row, encoding in enumerate(encodings):
            values = getattr(encoding, attr)
            array[row, : len(values)] = values
        feeds[name] = array
    return feeds


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class Classifier:
    """A stored model ready to predict: tokenizer + label map (+ an ONNX Runtime session when it
    runs in this process; the service runs its sub-batches in `serving.pool` processes)."""

    def __init__(
        self,
        session: ort.InferenceSession | None,
        tokenizer: Tokenizer,
        labels: Sequence[str],
        input_names: Sequence[str],
        sub_batch_size: int = DEFAULT_SUB_BATCH_SIZE,
        sub_batch_tokens: int | None = DEFAULT_SUB_BATCH_TOKENS,
    ) -> None:
        unknown = set(input_names) - set(ENCODING_FIELDS)
        if unknown:
            raise ValueError(f"model input(s) {sorted(unknown)} cannot be fed from a tokenizer")
        self.session = session
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.input_names = list(input_names)
        self.sub_batch_size = sub_batch_size
        self.sub_batch_tokens = sub_batch_tokens
        self.pad_id = pad_id(tokenizer)
        self.unk_id = unk_id(tokenizer)

    @classmethod
    def from_dir(
        cls,
        path: str | Path,
        threads: int | None = 1,
        sub_batch_size: int = DEFAULT_SUB_BATCH_SIZE,
        sub_batch_tokens: int | None = DEFAULT_SUB_BATCH_TOKENS,
        spinning: bool = False,
    ) -> Classifier:
        """Load the files of a stored model (docs/contracts.md); a missing or corrupt file is
        named. `threads=None` loads no session (the sub-batches run elsewhere)."""
        path = Path(path)
        config, tokenizer = check_model_dir(path)
        session = None if threads is None else make_session(path / "model.onnx", threads, spinning)
        return cls(
            session,
            tokenizer,
            config["labels"],
            config["input_names"],
            sub_batch_size,
            sub_batch_tokens,
        )

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(list(texts))

    def plan(self, encodings: Sequence[Encoding], parts: int = 1, sort: bool = True):
        """Sub-batches (index arrays) for `encodings`: length-sorted unless `sort` is False."""
        if not sort:
            order, size = np.arange(len(encodings)), self.sub_batch_size
            return [order[i : i + size] for i in range(0, len(order), size)]
        lengths = [len(e.ids) for e in encodings]
        return plan_sub_batches(lengths, self.sub_batch_size, self.sub_batch_tokens, parts)

    def feeds(self, encodings: Sequence[Encoding], chunk: np.ndarray) -> dict[str, np.ndarray]:
        return pad_batch([encodings[i] for i in chunk], self.input_names, self.pad_id)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of one sub-batch, in this process."""
        if self.session is None:
            raise RuntimeError("this Classifier has no ONNX Runtime session (threads=None)")
        return self.session.run(None, feeds)[0]

    def assemble(
        self, n: int, chunks: Sequence[np.ndarray], logits: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Class probabilities [n, labels] in input order from each sub-batch's logits."""
        probs = np.empty((n, len(self.labels)), np.float32)
        for chunk, out in zip(chunks, logits, strict=True):
            if out.shape[-1] != len(self.labels):
                raise ValueError(
                    f"model outputs {out.shape[-1]} classes but has {len(self.labels)} labels"
                )
            probs[chunk] = softmax(out.astype(np.float32))
        return probs

    def probabilities(self, encodings: Sequence[Encoding], sort: bool = True) -> np.ndarray:
        """Class probabilities in input order, run here in length-homogeneous sub-batches."""
        chunks = self.plan(encodings, sort=sort)
        logits = [self.run(self.feeds(encodings, chunk)) for chunk in chunks]
        return self.assemble(len(encodings), chunks, logits)

    def predictions(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """`{"label", "score", "scores"}` per row of probabilities, from the model's label map."""
        best = probs.argmax(axis=-1).tolist()
        rows = probs.tolist()
        labels = self.labels
        return [
            {"label": labels[k], "score": row[k], "scores": dict(zip(labels, row, strict=True))}
            for row, k in zip(rows, best, strict=True)
        ]

    def predict(self, texts: Sequence[str], sort: bool = True) -> list[dict[str, Any]]:
        """Label `texts`, in input order; texts longer than the model window are truncated."""
        if not texts:
            return []
        return self.predictions(self.probabilities(self.encode(texts), sort))
