"""The in-process limit: what this machine can classify with the service's own inference code and
no HTTP at all, in the best arrangement of processes x threads x batch size; plus PyTorch FP32
(the baseline's model) for reference.

Every arrangement runs the same texts: `processes` processes (spawned, started together), each
with a `threads`-thread ONNX Runtime session, each labelling its share in `Classifier.predict`
calls of `batch` texts (tokenize, length-sorted sub-batches as the service plans them, ONNX
Runtime, probabilities); throughput = all texts / the slowest process's time, best of 2.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def arrangements(cpus: int, batch_sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(processes, threads, batch) with processes x threads <= cpus (every split of the CPUs)."""
    out = []
    for processes in range(1, cpus + 1):
        for threads in range(1, cpus // processes + 1):
            if processes * threads == cpus or (processes, threads) == (1, 1):
                out += [(processes, threads, b) for b in batch_sizes]
    return out


def _worker(model_dir, threads, batch, sub_batch_size, sub_batch_tokens, texts, start, queue):
    from serving.inference import Classifier

    clf = Classifier.from_dir(model_dir, threads, sub_batch_size, sub_batch_tokens)
    clf.predict(texts[:batch])  # warm-up
    start.wait()
    best = float("inf")
    for _ in range(2):
        began = time.perf_counter()
        for i in range(0, len(texts), batch):
            clf.predict(texts[i : i + batch])
        best = min(best, time.perf_counter() - began)
    queue.put(best)


def run_arrangement(
    model_dir: str | Path,
    texts: Sequence[str],
    processes: int,
    threads: int,
    batch: int,
    sub_batch_size: int,
    sub_batch_tokens: int | None,
) -> float:
    """Texts/s of one arrangement (all processes running at once)."""
    ctx = mp.get_context("spawn")
    start, queue = ctx.Barrier(processes), ctx.Queue()
    shares = [list(texts[i::processes]) for i in range(processes)]
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                str(model_dir),
                threads,
                batch,
                sub_batch_size,
                sub_batch_tokens,
                share,
                start,
                queue,
            ),
        )
        for share in shares
    ]
    for p in procs:
        p.start()
    try:
        times = [queue.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return len(texts) / max(times)


def measure_limit(
    model_tag: str,
    texts: Sequence[str],
    service_env: dict[str, str],
    n: int,
    batch_sizes: Sequence[int],
    seed: int = 0,
) -> dict[str, Any]:
    """The grid of arrangements and its best (the limit every served figure is a ratio to)."""
    import os

    import bentoml

    from serving.inference import Classifier, available_cpus
    from serving.settings import ServiceSettings

    settings = ServiceSettings.from_env({**os.environ, **service_env, "MODEL_TAG": model_tag})
    model = bentoml.models.get(model_tag)
    sample = random.Random(seed).choices(list(texts), k=n)
    grid = {}
    for processes, threads, batch in arrangements(available_cpus(), batch_sizes):
        grid[f"{processes}x{threads} batch {batch}"] = round(
            run_arrangement(
                model.path,
                sample,
                processes,
                threads,
                batch,
                settings.sub_batch_size,
                settings.sub_batch_tokens,
            ),
            1,
        )
        print(
            f"  in-process {processes} process(es) x {threads} thread(s), batches of {batch}: "
            f"{grid[f'{processes}x{threads} batch {batch}']} texts/s",
            flush=True,
        )
    best = max(grid, key=grid.get)
    one = Classifier.from_dir(model.path, 1, settings.sub_batch_size, settings.sub_batch_tokens)
    tokens = [len(e.ids) for e in one.encode(sample)]
    meta = model.info.metadata
    return {
        "model": str(model.tag),
        "run_id": meta.get("run_id"),
        "data_fingerprint": meta.get("data_fingerprint"),
        "quantized": json.loads((Path(model.path) / "model_config.json").read_text()).get(
            "quantized"
        ),
        "texts": n,
        "tokens_mean": round(sum(tokens) / len(tokens), 1),
        "tokens_max": max(tokens),
        "sub_batch_size": settings.sub_batch_size,
        "sub_batch_tokens": settings.sub_batch_tokens,
        "grid": grid,
        "best": best,
        "texts_per_s": grid[best],
    }


def measure_torch(
    model_dir: Path, texts: Sequence[str], n: int, seed: int = 0, threads: int | None = None
) -> dict[str, Any]:
    """PyTorch FP32 texts/s through the baseline's own pipeline: 1 text, then 8 texts per call."""
    from loadtest.baseline import BaselineModel

    model = BaselineModel(model_dir, threads=threads)
    sample = random.Random(seed + 1).choices(list(texts), k=n)
    model.predict(sample[:8])  # warm-up
    result: dict[str, Any] = {"model_dir": str(model_dir), "texts": n}
    for size in (1, 8):
        start = time.perf_counter()
        for i in range(0, n, size):
            model.predict(sample[i : i + size])
        result[f"batch_{size}_texts_per_s"] = round(n / (time.perf_counter() - start), 1)
    import torch

    result["threads"] = torch.get_num_threads()
    del model
    gc.collect()
    return result
