"""The accuracy-vs-speed choice, measured in one run:
`python -m experiments.tradeoff TAG [TAG ...]`.

For each stored model, as the service runs it (ONNX through `serving.inference`): test accuracy
and macro-F1 on the rows of `--rows` (a run dir's test split, or a .jsonl), texts/s in-process in
the service's arrangement (one process per CPU, one ONNX Runtime thread each, predict calls of 32
texts, the service's sub-batches), the p50 latency of one text (one thread, as one inference
process answers a lone request), and the size of `model.onnx`. Prints a Markdown table (and
writes JSON with `--json`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common.metrics import classification_metrics


def measure(tag: str, rows: list[dict], latency_texts: int = 200) -> dict:
    import bentoml

    from loadtest.bench.limit import run_arrangement
    from serving.inference import Classifier, available_cpus

    model = bentoml.models.get(tag)
    texts = [r["text"] for r in rows]
    clf = Classifier.from_dir(model.path, threads=1)
    probs = clf.probabilities(clf.encode(texts))  # sub-batches as the service makes them
    metrics = classification_metrics([r["label"] for r in rows], probs, clf.labels)
    sample = (texts * (2048 // len(texts) + 1))[:2048]
    speed = run_arrangement(
        model.path, sample, available_cpus(), 1, 32, clf.sub_batch_size, clf.sub_batch_tokens
    )
    clf.predict(texts[:8])  # warm-up
    times = []
    for text in texts[:latency_texts]:
        started = time.perf_counter()
        clf.predict([text])
        times.append(time.perf_counter() - started)
    meta = model.info.metadata
    return {
        "model": str(model.tag),
        "base_model": meta.get("base_model"),
        "run_id": meta.get("run_id"),
        "distilled": bool((meta.get("distillation") or {}).get("used")),
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_macro_f1": round(metrics["macro_f1"], 4),
        "texts_per_s": round(speed, 1),
        "p50_one_text_ms": round(1e3 * statistics.median(times), 2),
        "size_mb": round((Path(model.path) / "model.onnx").stat().st_size / 1e6, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.tradeoff",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tags", nargs="+", help="stored models, e.g. sentiment-classifier:<v>")
    parser.add_argument("--rows", type=Path, required=True, help="a run dir or a .jsonl file")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from experiments.mcnemar import CompareError, resolve_rows
    from loadtest.bench.report import table

    try:
        rows, _, _ = resolve_rows(args.rows, "test")
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = []
    for tag in args.tags:
        results.append(measure(tag, rows))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    keys = [
        "model",
        "base_model",
        "distilled",
        "test_accuracy",
        "test_macro_f1",
        "texts_per_s",
        "p50_one_text_ms",
        "size_mb",
    ]
    print(table(results, keys))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": str(args.rows), "models": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
