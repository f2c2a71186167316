"""Classification metrics from logits: accuracy, macro-F1, ROC-AUC, confusion matrix."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Metrics for one split; `roc_auc` is one-vs-rest macro for more than two classes."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    preds = probs.argmax(axis=-1)
    labels = np.asarray(labels)
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
