"""Paired comparison of models on the same rows:
`python -m experiments.mcnemar BASE OTHER [OTHER...]`.

Each model is a stored model tag (`sentiment-classifier:<version>`, run as served: ONNX through
the serving runtime) or a training run directory (its FP32 HF model, through PyTorch). Every
model answers the same rows (`--rows`: a run dir's `data/<split>.jsonl`, default the first run
dir given, or a .jsonl file), and each OTHER is compared with BASE by the exact McNemar test: of
the rows where exactly one of the two is right, is the split further from 50/50 than chance
allows (two-sided binomial test)? Models trained on another split than the rows' (their data
fingerprints differ) are refused, since their test rows may have been their training rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.metrics import classification_metrics

log = logging.getLogger(__name__)


class CompareError(ValueError):
    """The models or rows cannot be compared; the message says why."""


@dataclass
class Model:
    name: str
    labels: list[str]
    data_fingerprint: str | None
    kind: str  # "stored" | "run"
    path: Path


def mcnemar(base_right: np.ndarray, other_right: np.ndarray) -> dict:
    """Exact McNemar test of two models' per-row correctness (boolean arrays, same rows)."""
    from scipy.stats import binomtest

    base_right, other_right = np.asarray(base_right, bool), np.asarray(other_right, bool)
    base_only = int(np.sum(base_right & ~other_right))
    other_only = int(np.sum(~base_right & other_right))
    discordant = base_only + other_only
    p = binomtest(other_only, discordant, 0.5).pvalue if discordant else 1.0
    return {
        "rows": len(base_right),
        "both_right": int(np.sum(base_right & other_right)),
        "base_only_right": base_only,
        "other_only_right": other_only,
        "both_wrong": int(np.sum(~base_right & ~other_right)),
        "accuracy_gain_points": 100 * (other_only - base_only) / len(base_right),
        "p_value": float(p),
    }


def resolve_model(spec: str) -> Model:
    """A run directory if `spec` is one, else a tag in the BentoML model store."""
    path = Path(spec)
    if path.is_dir():
        info_path = path / "run_info.json"
        if not info_path.is_file():
            raise CompareError(f"{path} is not a training run dir (no run_info.json)")
        info = json.loads(info_path.read_text())
        return Model(str(spec), info["labels"], info.get("data_fingerprint"), "run", path)
    import bentoml

    try:
        stored = bentoml.models.get(spec)
    except bentoml.exceptions.NotFound as e:
        raise CompareError(f"{spec} is neither a run directory nor a stored model ({e})") from e
    meta = stored.info.metadata
    return Model(
        str(stored.tag),
        list(meta["labels"]),
        meta.get("data_fingerprint"),
        "stored",
        Path(stored.path),
    )


def predict(model: Model, texts: list[str]) -> np.ndarray:
    """Class probabilities [rows, classes] of `model` on `texts`."""
    if model.kind == "stored":
        from serving.inference import Classifier, available_cpus

        # sub-batches as the service makes them (a model stored with
        # --activation-scales dynamic answers a little differently in other batches)
        clf = Classifier.from_dir(model.path, available_cpus())
        return clf.probabilities(clf.encode(texts))
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    info = json.loads((model.path / "run_info.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(model.path / "model")
    net = AutoModelForSequenceClassification.from_pretrained(model.path / "model").eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tokenizer(
                texts[start : start + 64],
                padding=True,
                truncation=True,
                max_length=info["max_length"],
                return_tensors="pt",
            )
            out.append(net(**batch).logits.softmax(-1).numpy())
    return np.concatenate(out)


def resolve_rows(spec: Path, split: str) -> tuple[list[dict], str | None, Path]:
    """Rows of a run dir's split (with its data fingerprint) or of a .jsonl file (none)."""
    if spec.is_dir():
        path = spec / "data" / f"{split}.jsonl"
        info = json.loads((spec / "run_info.json").read_text())
        fingerprint = info.get("data_fingerprint")
    else:
        path, fingerprint = spec, None
    if not path.is_file():
        raise CompareError(f"no rows at {path}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if not rows:
        raise CompareError(f"{path} holds no rows")
    return rows, fingerprint, path


def compare_models(
    specs: list[str], rows_spec: str | None = None, split: str = "test", force: bool = False
) -> dict:
    """Metrics of every model on the same rows and McNemar of each against the first."""
    if len(specs) < 2:
        raise CompareError("give at least two models: BASE OTHER [OTHER ...]")
    models = [resolve_model(s) for s in specs]
    if rows_spec is None:
        runs = [m for m in models if m.kind == "run"]
        if not runs:
            raise CompareError("--rows is needed when no model is a run directory")
        rows_spec = str(runs[0].path)
    rows, fingerprint, rows_path = resolve_rows(Path(rows_spec), split)
    labels = models[0].labels
    for m in models:
        if m.labels != labels:
            raise CompareError(f"{m.name} has labels {m.labels}, {models[0].name} has {labels}")
        if fingerprint and m.data_fingerprint != fingerprint and not force:
            raise CompareError(
                f"{m.name} was trained on another data split than {rows_path} "
                f"(fingerprint {str(m.data_fingerprint)[:12]}... vs {fingerprint[:12]}...): "
                "its rows may have been its training rows (--force compares anyway)"
            )
    texts = [r["text"] for r in rows]
    y = np.array([r["label"] for r in rows])
    results = []
    right = []
    for m in models:
        probs = predict(m, texts)
        metrics = classification_metrics(y, probs, labels)
        right.append(probs.argmax(-1) == y)
        results.append(
            {
                "model": m.name,
                "kind": m.kind,
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
            }
        )
    for result, other in zip(results[1:], right[1:], strict=True):
        result["vs_base"] = mcnemar(right[0], other)
    return {"rows": str(rows_path), "n": len(rows), "models": results}


def format_report(report: dict) -> str:
    lines = [f"rows: {report['rows']} ({report['n']})", ""]
    width = max(len(r["model"]) for r in report["models"])
    lines.append(f"{'model':{width}}  accuracy  macro-F1  vs base: gain  A-only  B-only  p (exact)")
    for i, r in enumerate(report["models"]):
        line = f"{r['model']:{width}}  {r['accuracy']:8.4f}  {r['macro_f1']:8.4f}"
        if i == 0:
            line += "  (base)"
        else:
            v = r["vs_base"]
            line += (
                f"  {v['accuracy_gain_points']:+8.2f} pt  {v['base_only_right']:6d}  "
                f"{v['other_only_right']:6d}  {v['p_value']:9.4f}"
            )
        lines.append(line)
    lines.append("")
    lines.append(
        "A-only / B-only: rows only the base / only that model gets right; p: exact McNemar "
        "(two-sided binomial on those rows)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.mcnemar", description=__doc__)
    p.add_argument("models", nargs="+", help="BASE OTHER [OTHER ...]: model tags or run dirs")
    p.add_argument("--rows", help="run dir (its data/<split>.jsonl) or a .jsonl file")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--force", action="store_true", help="compare models of another split too")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        report = compare_models(a.models, a.rows, a.split, a.force)
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
