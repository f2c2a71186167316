"""The reference profile of a model, made at export time with the served model itself and
stored with it (`export.pipeline`); `python -m monitoring profile` makes one for a model
exported before drift monitoring.

Input features (characters, tokens, truncation, unknown tokens) come from the run's training and
validation rows; prediction features (confidence, label mix) from the validation rows only: on
the rows it was trained on a model is more confident than on new texts, and a reference made
there would flag held-out data of the same distribution as drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from serving.drift import Profile, describe_texts, feature_values


def build_profile(
    classifier: Any,
    input_texts: Sequence[str],
    prediction_texts: Sequence[str],
    labels: Sequence[str],
    info: dict | None = None,
) -> Profile:
    """The profile of `classifier` (a `serving.inference.Classifier` with a session): input
    features over `input_texts`, prediction features over `prediction_texts`."""
    if not input_texts or not prediction_texts:
        raise ValueError("a reference profile needs input texts and prediction texts")
    encodings = classifier.encode(input_texts)
    inputs = feature_values(*describe_texts(input_texts, encodings, classifier.unk_id))
    encodings = classifier.encode(prediction_texts)
    probs = classifier.probabilities(encodings)
    predictions = feature_values(
        *describe_texts(prediction_texts, encodings, classifier.unk_id),
        confidence=probs.max(axis=1),
        label_index=probs.argmax(axis=1),
    )
    return Profile.build(inputs, predictions, labels, info)


def run_profile(
    classifier: Any, run: Any, validation_rows: Sequence[dict] | None = None
) -> Profile:
    """The profile of a training run (`export.rundir.RunDir`) served by `classifier`: inputs
    from train + validation rows, predictions from the validation rows."""
    train = [r["text"] for r in run.rows("train")]
    validation = [r["text"] for r in (validation_rows or run.rows("validation"))]
    info = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run.info.get("run_id"),
        "data_fingerprint": run.info.get("data_fingerprint"),
        "max_length": run.max_length,
        "sources": {
            "inputs": {"splits": ["train", "validation"], "texts": len(train) + len(validation)},
            "predictions": {"splits": ["validation"], "texts": len(validation)},
        },
    }
    return build_profile(classifier, train + validation, validation, run.labels, info)
