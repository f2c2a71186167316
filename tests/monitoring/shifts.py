"""Shifted traffic the drift tests build themselves from the tiny data generator."""

from __future__ import annotations

import random

from tests.tiny import FILLER_WORDS, NEGATIVE_WORDS, POSITIVE_WORDS, tiny_dataset


def longer_texts(n: int, seed: int) -> list[str]:
    """Balanced texts of the same vocabulary, 4-8x longer (well past the 32-token window);
    the sentiment word first, so truncation keeps it."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        cue = rng.choice(POSITIVE_WORDS if i % 2 else NEGATIVE_WORDS)
        words = [cue, *rng.choices(FILLER_WORDS, k=rng.randint(40, 70))]
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def other_vocabulary(n: int, seed: int) -> list[str]:
    """Texts of the same lengths and sentiment words, every other word unknown to the model
    (each filler word spelled backwards: the same characters and tokens per text)."""
    vocab = {word: word[::-1] for word in FILLER_WORDS}
    texts = []
    for row in tiny_dataset(n, seed):
        words = row["text"].rstrip(".").lower().split()
        texts.append(" ".join(vocab.get(w, w) for w in words).capitalize() + ".")
    return texts


def one_label(n: int, seed: int, label: str = "positive") -> list[str]:
    """Texts from the training distribution, all of one label."""
    rows = [r for r in tiny_dataset(2 * n, seed) if r["label"] == label]
    return [r["text"] for r in rows[:n]]
