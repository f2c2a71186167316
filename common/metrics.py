"""Classification metrics of one split (scikit-learn): accuracy, macro-F1, ROC-AUC, confusion.

One function for every stage, true labels first: `classification_metrics(labels, probs, names)`;
a stage holding logits (training) passes `softmax(logits)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities [n, classes] of logits [n, classes], computed in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def classification_metrics(labels: Sequence[int], probs: np.ndarray, names: Sequence[str]) -> dict:
    """Metrics of class probabilities `probs` [n, classes] against class ids `labels`.

    `roc_auc` is one-vs-rest macro for more than two classes, NaN for a single-class split.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    preds = probs.argmax(axis=-1)
    ids = list(range(len(names)))
    try:
        if len(names) == 2:
            auc = float(roc_auc_score(labels, probs[:, 1]))
        else:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr", labels=ids))
    except ValueError:  # a split holding a single class has no ROC curve
        auc = float("nan")
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, average="macro", labels=ids, zero_division=0)),
        "roc_auc": auc,
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
        "labels": list(names),
        "support": len(labels),
    }
