"""Serving runtime for `service.py`: config, request types, and tokenize -> ONNX -> probabilities.

Imports only numpy, onnxruntime, tokenizers and pydantic at module level (prometheus_client,
a bentoml dependency, is imported lazily once a worker has set up its multiprocess directory).
No torch, no transformers: this module is what the slim bento runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import onnxruntime as ort
from bentoml.exceptions import NotFound
from pydantic import AfterValidator, BaseModel, Field
from tokenizers import Encoding, Tokenizer

EXAMPLE_TEXTS = [
    "A moving, beautifully acted film that stays with you.",
    "Two hours of my life I will never get back.",
]
MODEL_FILES = ("model.onnx", "tokenizer.json", "model_config.json")
# Which tokenizers.Encoding field feeds which ONNX input.
ENCODING_FIELDS = {
    "input_ids": "ids",
    "attention_mask": "attention_mask",
    "token_type_ids": "type_ids",
}


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Service settings; each field is overridden by the environment variable of its name in
    upper case (MODEL_TAG, MAX_ITEMS, ...)."""

    model_tag: str = "sentiment-classifier:latest"  # MODEL_TAG
    max_items: int = 64  # MAX_ITEMS: texts per request
    max_text_chars: int = 2000  # MAX_TEXT_CHARS: characters per text (tokens are truncated)
    max_body_bytes: int = 1_048_576  # MAX_BODY_BYTES: request body size
    max_batch_size: int = 32  # MAX_BATCH_SIZE: texts per adaptive batch
    max_latency_ms: int = 10_000  # MAX_LATENCY_MS: dispatcher sheds (503) past this
    batch_wait_ms: int = 10  # BATCH_WAIT_MS: longest wait for a batch to fill on an idle model
    batch_min_wait_ms: int = 0  # BATCH_MIN_WAIT_MS: shortest wait (fuller batches, more latency)
    sub_batch_size: int = 8  # SUB_BATCH_SIZE: texts per ONNX Runtime call
    workers: int = 1  # WORKERS
    ort_threads: int = 0  # ORT_THREADS: intra-op threads, 0 = available CPUs / workers
    ort_spinning: int = 0  # ORT_SPINNING: 1 lets idle ORT threads spin (faster only on idle CPUs)
    request_timeout_s: float = 30.0  # REQUEST_TIMEOUT_S: 504 past this
    max_concurrency: int = 128  # MAX_CONCURRENCY: in-flight requests, 429 past this
    access_log: int = 0  # ACCESS_LOG: 1 logs a line per request (costs ~14% peak throughput)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServiceConfig:
        """Defaults overridden by the environment; a bad value names its variable."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            var = field.name.upper()
            raw = environ.get(var, "").strip()
            if not raw:
                continue
            kind = type(field.default)
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
            if kind is not str and (value < 0 or (value == 0 and field.default != 0)):
                raise ValueError(f"{var}={raw!r} must be positive")
            values[field.name] = value
        return cls(**values)

    def intra_op_threads(self) -> int:
        """ONNX Runtime intra-op threads: ORT_THREADS, else available CPUs shared by the workers."""
        return self.ort_threads or max(1, available_cpus() // self.workers)


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup v2 quota (containers)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus or 1)


def missing_model_message(tag: Any) -> str:
    home = os.environ.get("BENTOML_HOME", "~/bentoml")
    return (
        f"model {tag} is not in the BentoML model store (BENTOML_HOME={home}): run `make model` "
        "to train and export one, or set MODEL_TAG to a tag listed by `bentoml models list`"
    )


class StoredModel(bentoml.models.BentoModel):
    """A `BentoModel` reference (packed into the bento by `bentoml build`) whose resolution
    fails with a how-to, instead of trying BentoCloud, when the local store lacks it."""

    def resolve(self, base_path: Any = None) -> Any:
        if self.stored is None:
            raise NotFound(missing_model_message(self.tag))
        return super().resolve(base_path)


# ---- request / response types -------------------------------------------------------------


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or whitespace-only")
    return text


def text_list_type(config: ServiceConfig) -> Any:
    """`list[str]` with the request limits; pydantic turns a violation into a 400 naming it."""
    text = Annotated[
        str, Field(min_length=1, max_length=config.max_text_chars), AfterValidator(_not_blank)
    ]
    return Annotated[
        list[text],
        Field(
            min_length=1,
            max_length=config.max_items,
            description=(
                f"1 to {config.max_items} non-blank texts of at most {config.max_text_chars} "
                "characters; texts longer than the model window are truncated to it"
            ),
            examples=[EXAMPLE_TEXTS],
        ),
    ]


class Prediction(BaseModel):
    """One answer per input text, in input order."""

    label: str = Field(examples=["positive"])
    score: float = Field(examples=[0.97], description="probability of `label`")
    scores: dict[str, float] = Field(examples=[{"negative": 0.03, "positive": 0.97}])


# ---- inference ----------------------------------------------------------------------------


def load_tokenizer(path: str | Path, max_length: int) -> Tokenizer:
    """The stored fast tokenizer, truncating to the model window and never padding."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return tokenizer


def pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>"):
        if (token_id := tokenizer.token_to_id(token)) is not None:
            return token_id
    return 0


def length_sorted_chunks(lengths: Sequence[int], size: int) -> list[np.ndarray]:
    """Indices grouped into chunks of at most `size`, shortest texts first (stable)."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


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


def postprocess(probs: np.ndarray, labels: Sequence[str]) -> list[Prediction]:
    """One `Prediction` per row of class probabilities, labelled from the model's label map."""
    best = probs.argmax(axis=-1)
    return [
        Prediction(
            label=labels[k],
            score=float(row[k]),
            scores={label: float(p) for label, p in zip(labels, row, strict=True)},
        )
        for row, k in zip(probs, best, strict=True)
    ]


def make_session(
    model_path: str | Path, threads: int, spinning: bool = False
) -> ort.InferenceSession:
    """A CPU session; no spin-waiting by default: the event loop, the tokenizer and other
    workers share these cores (measured 1.8x faster under CPU contention, README)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


class Classifier:
    """A stored model ready to predict: tokenizer + ONNX Runtime session + label map."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        labels: Sequence[str],
        input_names: Sequence[str],
        sub_batch_size: int = 8,
    ) -> None:
        unknown = set(input_names) - set(ENCODING_FIELDS)
        if unknown:
            raise ValueError(f"model input(s) {sorted(unknown)} cannot be fed from a tokenizer")
        self.session = session
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.input_names = list(input_names)
        self.sub_batch_size = sub_batch_size
        self.pad_id = pad_id(tokenizer)
        self.observe = _no_metrics

    @classmethod
    def from_dir(
        cls, path: str | Path, threads: int = 1, sub_batch_size: int = 8, spinning: bool = False
    ) -> Classifier:
        """Load the files of a stored model (docs/contracts.md); a missing one is named."""
        path = Path(path)
        missing = [name for name in MODEL_FILES if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"stored model at {path} lacks {', '.join(missing)}")
        config = json.loads((path / "model_config.json").read_text())
        for key in ("labels", "max_length", "input_names"):
            if key not in config:
                raise ValueError(f"{path / 'model_config.json'} lacks the key {key!r}")
        return cls(
            make_session(path / "model.onnx", threads, spinning),
            load_tokenizer(path / "tokenizer.json", int(config["max_length"])),
            config["labels"],
            config["input_names"],
            sub_batch_size,
        )

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(list(texts))

    def probabilities(self, encodings: Sequence[Encoding], sort: bool = True) -> np.ndarray:
        """Class probabilities in input order, run in length-homogeneous sub-batches."""
        if sort:
            chunks = length_sorted_chunks([len(e.ids) for e in encodings], self.sub_batch_size)
        else:
            order = np.arange(len(encodings))
            size = self.sub_batch_size
            chunks = [order[i : i + size] for i in range(0, len(order), size)]
        probs = np.empty((len(encodings), len(self.labels)), np.float32)
        for chunk in chunks:
            feeds = pad_batch([encodings[i] for i in chunk], self.input_names, self.pad_id)
            logits = self.session.run(None, feeds)[0]
            if logits.shape[-1] != len(self.labels):
                raise ValueError(
                    f"model outputs {logits.shape[-1]} classes but has {len(self.labels)} labels"
                )
            probs[chunk] = softmax(logits.astype(np.float32))
        return probs

    def predict(self, texts: Sequence[str], sort: bool = True) -> list[Prediction]:
        """Label `texts`, in input order; texts longer than the model window are truncated."""
        if not texts:
            return []
        encodings = self.encode(texts)
        predictions = postprocess(self.probabilities(encodings, sort), self.labels)
        self.observe(encodings, predictions)
        return predictions


def _no_metrics(encodings: Sequence[Encoding], predictions: Sequence[Prediction]) -> None:
    return None


# ---- adaptive batching -------------------------------------------------------------------


def cap_batch_wait(max_wait_s: float, min_wait_s: float = 0.0) -> bool:
    """Cap how long BentoML's dispatcher holds a batch open while the model is idle.

    BentoML 1.4 learns that wait from the average queueing delay of past batches. After a burst
    the average is high and self-sustaining, so a lone request then waits that long for
    minutes (measured: 12 ms before a burst, 320-410 ms after). With the cap, batches still fill
    under load (requests queue while the previous batch runs) and idle latency stays low.
    `min_wait_s` is a floor: batches fill more at the cost of that much latency when idle.
    Returns False, leaving BentoML as is, if its dispatcher internals have changed.
    """
    try:
        from bentoml._internal.marshal.dispatcher import Optimizer
    except ImportError:
        return False
    learn = getattr(Optimizer, "uncapped_trigger_refresh", None) or Optimizer.trigger_refresh

    def trigger_refresh(self: Any) -> None:
        learn(self)
        self.wait = min(max(self.wait, min_wait_s), max_wait_s)

    Optimizer.uncapped_trigger_refresh = learn
    Optimizer.trigger_refresh = trigger_refresh
    return True


# ---- metrics ------------------------------------------------------------------------------


@functools.cache
def prometheus_observer(max_batch_size: int):
    """An `observe(encodings, predictions)` that feeds the model's own Prometheus metrics.

    Call it in the worker (service `__init__`), after BentoML has set PROMETHEUS_MULTIPROC_DIR:
    prometheus_client picks its multiprocess mode when first imported.
    """
    from prometheus_client import Counter, Histogram

    batch_size = Histogram(
        "sentiment_batch_size",
        "Texts per adaptive batch (one call of the inference function)",
        buckets=[2**i for i in range(int(math.log2(max(max_batch_size, 1))) + 1)],
    )
    tokens = Histogram(
        "sentiment_tokens_per_text",
        "Tokens per text after truncation to the model window",
        buckets=[4, 8, 16, 32, 64, 128, 256, 512],
    )
    truncated = Counter("sentiment_truncated_texts", "Texts truncated to the model window")
    predictions = Counter("sentiment_predictions", "Predictions per label", ["label"])

    def observe(encodings: Sequence[Encoding], preds: Sequence[Prediction]) -> None:
        batch_size.observe(len(encodings))
        for encoding in encodings:
            tokens.observe(len(encoding.ids))
        truncated.inc(sum(1 for e in encodings if e.overflowing))
        for pred in preds:
            predictions.labels(label=pred.label).inc()

    return observe


# ---- request guard (ASGI middleware) ------------------------------------------------------


class RequestGuard:
    """Rejects POST bodies over `max_body_bytes` (413) and non-JSON content types (415).

    Runs before BentoML parses the body, so an oversized request is never read into memory
    beyond the limit; everything else (GET /livez, /metrics, /, ...) passes untouched.
    """

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media_type = headers.get("content-type", "application/json").split(";")[0].strip()
        if media_type not in ("application/json", ""):
            msg = f"unsupported Content-Type {media_type!r}: send application/json"
            return await _send_error(send, 415, msg)
        too_big = f"request body exceeds the limit of {self.max_body_bytes} bytes (MAX_BODY_BYTES)"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return await _send_error(send, 413, too_big)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_body_bytes:
                return await _send_error(send, 413, too_big)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _send_error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---- benchmark: python -m sentiment_runtime ----------------------------------------------

# fmt: off
_BENCH_WORDS = [
    "the", "film", "movie", "plot", "cast", "was", "is", "a", "an", "and", "but", "really",
    "quite", "not", "very", "great", "awful", "boring", "funny", "moving", "charming", "dull",
    "story", "acting", "director", "script", "scenes", "ending", "characters",
]
# fmt: on


def synthetic_texts(n: int, seed: int = 0, max_words: int = 120) -> list[str]:
    """`n` review-like texts with long-tailed lengths (most short, a few near `max_words`)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=3.0, sigma=0.7, size=n).astype(int), 1, max_words)
    return [" ".join(rng.choice(_BENCH_WORDS, size=k)) + "." for k in lengths]


def bench(
    classifier: Classifier, texts: Sequence[str], batch_size: int = 64, repeat: int = 3
) -> dict[str, float]:
    """In-process texts/s of `predict`, length-sorted sub-batches vs input order (best of N)."""
    import time

    result = {}
    for sort in (True, False):
        best = math.inf
        for _ in range(repeat):
            start = time.perf_counter()
            for i in range(0, len(texts), batch_size):
                classifier.predict(texts[i : i + batch_size], sort=sort)
            best = min(best, time.perf_counter() - start)
        result["sorted" if sort else "unsorted"] = len(texts) / best
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    import argparse

    parser = argparse.ArgumentParser(description=bench.__doc__)
    parser.add_argument("--model-tag", default=ServiceConfig.from_env().model_tag)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64, help="texts per predict call")
    parser.add_argument("--sub-batch-size", type=int, default=ServiceConfig().sub_batch_size)
    parser.add_argument("--threads", type=int, default=ServiceConfig().intra_op_threads())
    parser.add_argument("--spinning", action="store_true", help="let idle ORT threads spin")
    args = parser.parse_args(argv)
    model = bentoml.models.get(args.model_tag)
    classifier = Classifier.from_dir(model.path, args.threads, args.sub_batch_size, args.spinning)
    texts = synthetic_texts(args.texts)
    classifier.predict(texts[:8])
    result = bench(classifier, texts, args.batch_size)
    print(json.dumps({"model": str(model.tag), **vars(args), "texts_per_s": result}))
    return result


if __name__ == "__main__":
    main()
