"""Classification metrics of a training run's splits, from the model's logits."""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from common.metrics import classification_metrics as _metrics


def classification_metrics(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Metrics for one split; `roc_auc` is one-vs-rest macro for more than two classes."""
    return _metrics(labels, softmax(np.asarray(logits, dtype=np.float64), axis=-1), names)
