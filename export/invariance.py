"""The /classify contract as a check: a text's scores do not depend on its batch mates.

A text is scored alone, then inside batches of other texts: unsorted batches in file order (mixed
lengths, so it is padded to a longer mate), shuffled batches of another size, and the service's
length-sorted sub-batches. Every way must give each text the scores it gets alone, within a
tolerance (float noise, 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (name, batch size, shuffled): the batchings compared with scoring each text alone.
BATCHINGS = (("file order, 8", 8, False), ("shuffled, 32", 32, True), ("shuffled, 2", 2, True))


def run_chunks(runtime, encodings, chunks: Sequence[np.ndarray]) -> np.ndarray:
    """Probabilities of `encodings` (input order) run as the given index chunks, each padded to its
    own longest text (`runtime`: a `serving.inference.Classifier` with a session)."""
    logits = [runtime.run(runtime.feeds(encodings, chunk)) for chunk in chunks]
    return runtime.assemble(len(encodings), chunks, logits)


def batchings(n: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Index chunks of every way `BATCHINGS` names, plus each text alone ("alone")."""
    rng = np.random.default_rng(seed)
    ways = {"alone": [np.array([i]) for i in range(n)]}
    for name, size, shuffled in BATCHINGS:
        order = rng.permutation(n) if shuffled else np.arange(n)
        ways[name] = [order[i : i + size] for i in range(0, n, size)]
    return ways


def batch_invariance(runtime, texts: Sequence[str], tolerance: float = 1e-5, seed: int = 0) -> dict:
    """Scores of `texts` alone vs inside batches (`BATCHINGS` and the runtime's own length-sorted
    sub-batches): the largest difference, how many texts differ by more than `tolerance`, and how
    many labels flip, per batching and overall (key "passed": no text beyond the tolerance)."""
    if not texts:
        raise ValueError("the invariance check needs at least one text")
    encodings = runtime.encode(texts)
    ways = batchings(len(texts), seed)
    ways["service sub-batches"] = runtime.plan(encodings)
    alone = run_chunks(runtime, encodings, ways.pop("alone"))
    per_way = {}
    for name, chunks in ways.items():
        probs = run_chunks(runtime, encodings, chunks)
        diff = np.abs(probs - alone).max(axis=1)
        per_way[name] = {
            "max_diff": float(diff.max()),
            "texts_over_tolerance": int((diff > tolerance).sum()),
            "label_flips": int((probs.argmax(1) != alone.argmax(1)).sum()),
        }
    worst = max(v["max_diff"] for v in per_way.values())
    return {
        "texts": len(texts),
        "tolerance": tolerance,
        "max_diff": worst,
        "texts_over_tolerance": max(v["texts_over_tolerance"] for v in per_way.values()),
        "label_flips": max(v["label_flips"] for v in per_way.values()),
        "passed": worst <= tolerance,
        "batchings": per_way,
    }
