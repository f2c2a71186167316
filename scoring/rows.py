"""What both engines do per row: the rules that keep a row from the model, and the added columns.

The HTTP engine checks rows before sending them and the Ray engine checks them before its model
runs, with the same function, so a bad row gets the same `error` from either engine. A text is
blank by the service's own rule (`serving.schema.check_text`: no visible character).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from serving.schema import check_text

MISSING = "missing text"
NOT_STRING = "text is not a string"
EMPTY = "empty text"
TOO_LONG = "text over {limit} characters"


@dataclass
class RowResult:
    prediction: dict | None  # {"label", "score", "scores"}
    error: str | None = None


def row_error(value: object, max_chars: int | None = None) -> str | None:
    """Why this value cannot be scored, or None when it can. `max_chars`: the service's
    per-text character limit (the Ray engine applies it too, so both engines agree)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if not isinstance(value, str):
        return f"{NOT_STRING} ({type(value).__name__})"
    if max_chars is not None and len(value) > max_chars:
        return TOO_LONG.format(limit=max_chars)
    try:
        check_text(value)
    except ValueError:
        return EMPTY
    return None


def skip_reason(error: str) -> str:
    """The summary's bucket for a row error (the part before any ':')."""
    return error.split(":")[0]


def column_names(prefix: str, labels: list[str], all_scores: bool) -> dict[str, str]:
    """Added column of each key: label, score, score_<label> (with --all-scores), error."""
    keys = ["label", "score", *([f"score_{lab}" for lab in labels] if all_scores else []), "error"]
    return {k: prefix + k for k in keys}


def assemble(
    df: pd.DataFrame,
    keep: list[str],
    names: dict[str, str],
    labels: list[str],
    all_scores: bool,
    results: list[RowResult],
) -> pd.DataFrame:
    """The output rows: the kept input columns, then the prediction columns."""
    out = df[keep].copy()
    out[names["label"]] = pd.array(
        [r.prediction["label"] if r.prediction else None for r in results], dtype="object"
    )
    out[names["score"]] = [
        float(r.prediction["score"]) if r.prediction else math.nan for r in results
    ]
    if all_scores:
        for lab in labels:
            out[names[f"score_{lab}"]] = [
                float(r.prediction["scores"].get(lab, math.nan)) if r.prediction else math.nan
                for r in results
            ]
    out[names["error"]] = pd.array([r.error for r in results], dtype="object")
    return out
