"""One adaptive batch, end to end: tokenize, plan length-sorted sub-batches, run them (in the
inference processes, or in this process), put the probabilities back in input order, label
them, and record the batch's metrics and timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving import context
from serving.inference import DEFAULT_SUB_BATCH_SIZE, DEFAULT_SUB_BATCH_TOKENS, Classifier
from serving.pool import InferencePool


class BatchRunner:
    """The stored model at `model_dir`, run by `processes` single-thread inference processes
    (0: by `threads` ONNX Runtime threads in this process)."""

    def __init__(
        self,
        model_dir: str | Path,
        processes: int,
        threads: int = 1,
        sub_batch_size: int = DEFAULT_SUB_BATCH_SIZE,
        sub_batch_tokens: int | None = DEFAULT_SUB_BATCH_TOKENS,
        spinning: bool = False,
    ) -> None:
        self.classifier = Classifier.from_dir(
            model_dir,
            threads=None if processes else threads,
            sub_batch_size=sub_batch_size,
            sub_batch_tokens=sub_batch_tokens,
            spinning=spinning,
        )
        self.pool = InferencePool(model_dir, processes, threads, spinning) if processes else None
        self.parts = max(processes, 1)
        self.metrics: Any = None  # serving.metrics.Metrics, set once the worker has them
        self.monitor: Any = None  # serving.monitor.PredictionMonitor: prediction log, drift

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def start(self) -> BatchRunner:
        if self.pool is not None:
            self.pool.start()
        else:
            self.classifier.predict(["warm-up"])
        return self

    def alive(self) -> int:
        """Inference processes running (0 when inference runs in this process); the
        `sentiment_inference_processes` gauge, once the metrics are set."""
        alive = 0 if self.pool is None else self.pool.alive()
        if self.metrics is not None:
            self.metrics.inference_processes.set(alive)
        return alive

    def healthy(self) -> bool:
        return self.pool is None or self.alive() > 0

    async def classify(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """`{"label", "score", "scores"}` per text, in input order."""
        started = time.perf_counter()
        clf = self.classifier
        encodings = clf.encode(texts)
        chunks = clf.plan(encodings, parts=self.parts)
        feeds = [clf.feeds(encodings, chunk) for chunk in chunks]
        if self.pool is not None:
            logits = await self.pool.run_batches(feeds)
        else:
            logits = await asyncio.to_thread(lambda: [clf.run(f) for f in feeds])
        predictions = clf.predictions(clf.assemble(len(texts), chunks, logits))
        seconds = time.perf_counter() - started
        context.record_batch(texts, started, seconds)
        if self.metrics is not None:
            self.metrics.observe_batch(
                [len(e.ids) for e in encodings],
                sum(1 for e in encodings if e.overflowing),
                [p["label"] for p in predictions],
                seconds,
            )
            if self.pool is not None:
                self.alive()
        if self.monitor is not None:
            self.monitor.observe(texts, encodings, predictions)
        return predictions

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        if self.pool is not None:
            self.pool.close()
