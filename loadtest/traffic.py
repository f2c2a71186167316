"""Realistic /classify traffic: real review snippets, request sizes, and answer checks.

Plain functions with no Locust import, shared by the locustfile (which sends the requests) and the
benchmark (which measures the in-process limit on the same texts).
"""

from __future__ import annotations

import bz2
import csv
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN_DIR = REPO_ROOT / "runs" / "latest"
CORPUS_PATH = REPO_ROOT / ".cache" / "rotten_tomatoes_corpus_full.csv.bz2"
SPLITS = ("train", "validation", "test")
DEFAULT_LABELS = ("negative", "positive")
# Used only when neither a run directory nor the cached corpus exists (a fresh clone).
FALLBACK_TEXTS = (
    "A moving, beautifully acted film that stays with you.",
    "Two hours of my life I will never get back.",
    "Funny, smart and surprisingly tender.",
    "The plot collapses under the weight of its own clichés.",
    "An uneven but often charming comedy.",
    "Dull.",
    "A triumph.",
    (
        "Visually stunning, emotionally empty: the script never finds a reason for any of it, "
        "and the cast, good as they are, cannot save scenes that go nowhere."
    ),
    "It is the rare sequel that improves on the original in every way.",
    "Clumsy, tedious and far too long.",
)


def default_source() -> Path | None:
    """`runs/latest` if it holds the saved splits, else the cached raw corpus, else None."""
    if (DEFAULT_RUN_DIR / "data" / "test.jsonl").is_file():
        return DEFAULT_RUN_DIR
    return CORPUS_PATH if CORPUS_PATH.is_file() else None


def load_texts(source: str | Path | None = None) -> list[str]:
    """Texts to send, in their real length distribution.

    `source`: a training run directory (its `data/{train,validation,test}.jsonl`), a `.jsonl`
    file with a `text` field, or the raw Rotten Tomatoes corpus (`.csv.bz2`, critic snippets
    only: plot summaries are not reviews). None: `default_source()`, else a built-in list.
    """
    source = default_source() if source is None else Path(source)
    if source is None:
        return list(FALLBACK_TEXTS)
    if source.is_dir():
        files = [source / "data" / f"{split}.jsonl" for split in SPLITS]
        files = [f for f in files if f.is_file()]
        if not files:
            raise FileNotFoundError(f"{source} has no data/{{train,validation,test}}.jsonl")
        texts = [t for f in files for t in _jsonl_texts(f)]
    elif source.name.endswith(".jsonl"):
        texts = _jsonl_texts(source)
    elif source.name.endswith((".csv", ".csv.bz2")):
        texts = _corpus_texts(source)
    else:
        raise ValueError(f"{source}: expected a run directory, a .jsonl or a .csv(.bz2) file")
    texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError(f"{source}: no texts found")
    return texts


def _jsonl_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def _corpus_texts(path: Path) -> list[str]:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f)
        return [r["text"] for r in rows if r.get("category") in ("fresh", "rotten")]


def load_labels(source: str | Path | None = None) -> list[str]:
    """Label names from a run directory's `run_info.json`, else negative/positive."""
    source = default_source() if source is None else Path(source)
    info = Path(source) / "run_info.json" if source is not None else None
    if info is not None and info.is_file():
        return list(json.loads(info.read_text())["labels"])
    return list(DEFAULT_LABELS)


def parse_sizes(spec: str | int) -> list[int]:
    """Texts per request: "8" -> [8]; "1,8" -> a request picks 1 or 8 at random (repeat a size to
    weight it: "1,1,1,8" sends one 8-text request for three 1-text ones)."""
    try:
        sizes = [int(s) for s in str(spec).split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"texts per request {spec!r}: expected integers like 8 or 1,8") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"texts per request {spec!r}: expected integers >= 1")
    return sizes


def sample_request(rng: random.Random, texts: Sequence[str], sizes: Sequence[int]) -> list[str]:
    """One request body's texts: a size drawn from `sizes`, texts drawn uniformly from `texts`."""
    return rng.choices(texts, k=rng.choice(sizes))


def check_answer(status: int, answer: Any, n_texts: int, labels: Sequence[str]) -> str | None:
    """Why an answer to a request of `n_texts` texts breaks the /classify contract, or None."""
    if status != 200:
        return f"HTTP {status}"
    if not isinstance(answer, list):
        return f"answer is a {type(answer).__name__}, not a list"
    if len(answer) != n_texts:
        return f"{len(answer)} results for {n_texts} texts"
    for item in answer:
        if not isinstance(item, dict) or item.get("label") not in labels:
            return f"unknown label in {str(item)[:100]}"
        score, scores = item.get("score"), item.get("scores")
        if not isinstance(score, float) or not 0.0 <= score <= 1.0:
            return f"score {score!r} is not a probability"
        if not isinstance(scores, dict) or set(scores) != set(labels):
            return f"scores {scores!r} do not cover the labels {list(labels)}"
    return None
