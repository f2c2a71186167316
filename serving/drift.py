"""Drift statistics: the reference profile a model carries, and PSI against it.

One implementation (numpy only) for the service's live gauges (`serving.monitor`) and the drift
report (`python -m monitoring report`), so both compute the same numbers.

The features, per classified text:
- `chars`: characters; `tokens`: tokens after truncation to the model window;
- `truncated`: 1 if the text was cut to the window, else 0;
- `unk_rate`: the share of its tokens that are the tokenizer's unknown token ([UNK]);
- `confidence`: the top class probability; `label`: the predicted label (categorical).

The profile (`reference_profile.json` in the stored model, docs/contracts.md) holds, per
feature, bin edges and the reference proportions of each bin: deciles of the reference values
for the numeric features (so each bin holds about a tenth of the reference), fixed edges for
`truncated`, the labels for `label`. A bin `i` holds the values `edges[i-1] < x <= edges[i]`.

PSI (population stability index) = sum over bins of (current - reference) * ln(current /
reference), proportions floored at `PSI_EPSILON` so that an empty bin counts but is finite.
Usual reading: below 0.1 stable, 0.1-0.25 a moderate shift (`PSI_WARN`), above 0.25 a
significant shift (`PSI_DRIFT`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_FILE = "reference_profile.json"
PROFILE_FORMAT = "sentiment-reference-profile"
PROFILE_VERSION = 1
PSI_WARN = 0.1
PSI_DRIFT = 0.25
PSI_EPSILON = 1e-4
QUANTILE_BINS = 10

NUMERIC_FEATURES = ("chars", "tokens", "truncated", "unk_rate", "confidence")
FEATURES = (*NUMERIC_FEATURES, "label")
INPUT_FEATURES = ("chars", "tokens", "truncated", "unk_rate")  # of the text alone
DESCRIPTIONS = {
    "chars": "characters per text",
    "tokens": "tokens per text (after truncation)",
    "truncated": "share of texts truncated to the model window",
    "unk_rate": "share of a text's tokens that are unknown ([UNK])",
    "confidence": "top class probability",
    "label": "predicted label mix",
}
FIXED_EDGES = {"truncated": (0.5,)}
# Edges are rounded to this: a confident model's top probabilities crowd just below 1, and INT8
# answers move slightly with the batch a text runs in (README, Known limits): finer bins would
# turn that noise into drift.
EDGE_RESOLUTION = {"confidence": 1e-3}


class ProfileError(ValueError):
    """A reference profile is missing or malformed; the message names the file."""


def describe_texts(
    texts: Sequence[str], encodings: Sequence[Any], unk_id: int | None
) -> tuple[list[int], list[int], list[bool], list[int]]:
    """Characters, tokens, truncated or not, and unknown tokens of each text, from its
    `tokenizers.Encoding` (truncated to the model window, not padded)."""
    chars, tokens, truncated, unknown = [], [], [], []
    for text, encoding in zip(texts, encodings, strict=True):
        ids = encoding.ids
        chars.append(len(text))
        tokens.append(len(ids))
        truncated.append(bool(encoding.overflowing))
        unknown.append(ids.count(unk_id) if unk_id is not None else 0)
    return chars, tokens, truncated, unknown


def feature_values(
    chars: Iterable[float],
    tokens: Iterable[float],
    truncated: Iterable[float],
    unknown: Iterable[float],
    confidence: Iterable[float] | None = None,
    label_index: Iterable[int] | None = None,
) -> dict[str, np.ndarray]:
    """The feature arrays of a set of texts (prediction features only when given)."""
    n_tokens = np.asarray(list(tokens), np.float64)
    values = {
        "chars": np.asarray(list(chars), np.float64),
        "tokens": n_tokens,
        "truncated": np.asarray(list(truncated), np.float64),
        "unk_rate": np.asarray(list(unknown), np.float64) / np.maximum(n_tokens, 1.0),
    }
    if confidence is not None:
        values["confidence"] = np.asarray(list(confidence), np.float64)
    if label_index is not None:
        values["label"] = np.asarray(list(label_index), np.int64)
    return values


def quantile_edges(
    values: np.ndarray, bins: int = QUANTILE_BINS, resolution: float = 1e-6
) -> tuple[float, ...]:
    """Inner bin edges at the quantiles of `values`, rounded to `resolution` and deduplicated
    (a value that fills several quantiles, e.g. 0 unknown tokens, becomes one bin)."""
    if len(values) == 0:
        raise ValueError("cannot make bins from no values")
    qs = np.quantile(np.asarray(values, np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    rounded = np.round(qs / resolution) * resolution
    return tuple(float(f"{x:.10g}") for x in np.unique(rounded))


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """PSI of `current` against `reference` (proportions or counts, same bins)."""
    ref = np.asarray(reference, np.float64)
    cur = np.asarray(current, np.float64)
    if ref.shape != cur.shape:
        raise ValueError(f"bins differ: {ref.shape} vs {cur.shape}")
    if cur.sum() <= 0 or ref.sum() <= 0:
        return math.nan
    ref = np.maximum(ref / ref.sum(), epsilon)
    cur = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass(frozen=True)
class FeatureReference:
    """One feature of a profile: its bins and the reference proportion in each."""

    name: str
    kind: str  # "numeric" | "categorical"
    proportions: tuple[float, ...]
    n: int
    edges: tuple[float, ...] = ()  # numeric: inner edges, len(proportions) - 1
    categories: tuple[str, ...] = ()  # categorical: one per proportion
    mean: float | None = None  # numeric: mean and quantiles of the reference, for reports
    quantiles: dict[str, float] = field(default_factory=dict)  # {"p10", "p50", "p90"}

    @classmethod
    def numeric(cls, name: str, values: np.ndarray, edges: Sequence[float] | None = None):
        if edges is None:
            edges = quantile_edges(values, resolution=EDGE_RESOLUTION.get(name, 1e-6))
        counts = bin_counts(values, edges)
        return cls(
            name,
            "numeric",
            tuple(float(p) for p in counts / max(len(values), 1)),
            len(values),
            edges=tuple(edges),
            mean=float(np.mean(values)),
            quantiles=summary_quantiles(values),
        )

    @classmethod
    def categorical(cls, name: str, indices: np.ndarray, categories: Sequence[str]):
        counts = np.bincount(np.asarray(indices, np.int64), minlength=len(categories))
        return cls(
            name,
            "categorical",
            tuple(float(p) for p in counts / max(len(indices), 1)),
            len(indices),
            categories=tuple(categories),
        )

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many of `values` fall in each bin (numeric) or category (label indices)."""
        if self.kind == "categorical":
            indices = np.asarray(values, np.int64)
            return np.bincount(indices, minlength=len(self.categories))[: len(self.categories)]
        return bin_counts(values, self.edges)

    def score(self, values: np.ndarray) -> float:
        """PSI of `values` against this reference (NaN for no values)."""
        return psi(np.asarray(self.proportions), self.counts(values))

    def bin_names(self) -> list[str]:
        """Human-readable bins: '<= 12', '12-20', ..., '> 90', or the categories."""
        if self.kind == "categorical":
            return list(self.categories)
        if self.edges == FIXED_EDGES.get(self.name):
            return ["no", "yes"]
        e = [f"{x:g}" for x in self.edges]
        return [f"<= {e[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(e)), f"> {e[-1]}"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "description": DESCRIPTIONS.get(self.name, "")}
        if self.kind == "numeric":
            out["edges"] = list(self.edges)
            out["mean"] = self.mean
            out["quantiles"] = self.quantiles
        else:
            out["categories"] = list(self.categories)
        out["proportions"] = [round(p, 6) for p in self.proportions]
        out["n"] = self.n
        return out

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> FeatureReference:
        kind = d.get("kind")
        proportions = tuple(float(p) for p in d["proportions"])
        if kind == "numeric":
            edges = tuple(float(x) for x in d["edges"])
            if len(proportions) != len(edges) + 1 or list(edges) != sorted(edges):
                raise ValueError(f"feature {name!r}: needs sorted edges and one more proportion")
            quantiles = {str(k): float(v) for k, v in (d.get("quantiles") or {}).items()}
            return cls(name, kind, proportions, int(d["n"]), edges, (), d.get("mean"), quantiles)
        if kind == "categorical":
            categories = tuple(str(c) for c in d["categories"])
            if len(categories) != len(proportions):
                raise ValueError(f"feature {name!r}: one proportion per category needed")
            return cls(name, kind, proportions, int(d["n"]), categories=categories)
        raise ValueError(f"feature {name!r}: unknown kind {kind!r}")


def summary_quantiles(values: np.ndarray) -> dict[str, float]:
    """p10, median and p90 of `values` (for reports)."""
    q = (
        np.quantile(np.asarray(values, np.float64), [0.1, 0.5, 0.9])
        if len(values)
        else [np.nan] * 3
    )
    return {"p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Counts per bin `edges[i-1] < x <= edges[i]` (len(edges) + 1 bins)."""
    index = np.searchsorted(np.asarray(edges, np.float64), np.asarray(values, np.float64), "left")
    return np.bincount(index, minlength=len(edges) + 1)


@dataclass
class Profile:
    """A model's reference profile: what its inputs and predictions looked like at export."""

    features: dict[str, FeatureReference]
    labels: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        inputs: Mapping[str, np.ndarray],
        predictions: Mapping[str, np.ndarray],
        labels: Sequence[str],
        info: Mapping[str, Any] | None = None,
    ) -> Profile:
        """From the feature arrays (`feature_values`) of the reference texts: the input
        features from `inputs`, the prediction features (confidence, label) from `predictions`."""
        features = {}
        for name in INPUT_FEATURES:
            features[name] = FeatureReference.numeric(name, inputs[name], FIXED_EDGES.get(name))
        features["confidence"] = FeatureReference.numeric("confidence", predictions["confidence"])
        features["label"] = FeatureReference.categorical("label", predictions["label"], labels)
        return cls(features, list(labels), dict(info or {}))

    def scores(self, values: Mapping[str, np.ndarray]) -> dict[str, float]:
        """PSI per feature of the current values (features missing from `values` skipped)."""
        return {
            name: ref.score(values[name]) for name, ref in self.features.items() if name in values
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "labels": self.labels,
            "psi_epsilon": PSI_EPSILON,
            **self.info,
            "features": {name: ref.to_dict() for name, ref in self.features.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        if d.get("format") != PROFILE_FORMAT or d.get("version") != PROFILE_VERSION:
            raise ValueError(
                f"not a {PROFILE_FORMAT} version {PROFILE_VERSION} "
                f"(format={d.get('format')!r}, version={d.get('version')!r})"
            )
        raw = d.get("features")
        if not isinstance(raw, dict) or set(raw) != set(FEATURES):
            raise ValueError(f"'features' must hold exactly {list(FEATURES)}")
        features = {name: FeatureReference.from_dict(name, raw[name]) for name in FEATURES}
        labels = [str(x) for x in d.get("labels", [])]
        if list(features["label"].categories) != labels:
            raise ValueError("'labels' and the label feature's categories differ")
        info = {k: v for k, v in d.items() if k not in ("features", "labels")}
        return cls(features, labels, info)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile; a missing or malformed file raises `ProfileError` naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except FileNotFoundError:
            raise ProfileError(f"{path}: no reference profile there") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ProfileError(f"{path}: not a readable JSON file ({e})") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ProfileError(f"{path}: not a valid reference profile ({e})") from None


def status(score: float, warn: float = PSI_WARN, drift: float = PSI_DRIFT) -> str:
    """'ok', 'warn' or 'drift' for a PSI ('n/a' for NaN)."""
    if math.isnan(score):
        return "n/a"
    return "drift" if score >= drift else "warn" if score >= warn else "ok"


class Window:
    """The feature values of the last `size` texts (a ring buffer per feature)."""

    def __init__(self, size: int, names: Sequence[str] = FEATURES) -> None:
        if size < 1:
            raise ValueError("window size must be >= 1")
        self.size = size
        self.data = {n: np.zeros(size, np.int64 if n == "label" else np.float64) for n in names}
        self.pos = 0
        self.count = 0

    def add(self, values: Mapping[str, np.ndarray]) -> None:
        n = len(next(iter(values.values())))
        if n >= self.size:  # only the last `size` values stay
            values = {k: v[-self.size :] for k, v in values.items()}
            n = self.size
        end = self.pos + n
        for name, array in self.data.items():
            new = values[name]
            if end <= self.size:
                array[self.pos : end] = new
            else:
                split = self.size - self.pos
                array[self.pos :] = new[:split]
                array[: end - self.size] = new[split:]
        self.pos = end % self.size
        self.count = min(self.size, self.count + n)

    def values(self) -> dict[str, np.ndarray]:
        """The held values (in no particular order)."""
        return {name: array[: self.count] for name, array in self.data.items()}
