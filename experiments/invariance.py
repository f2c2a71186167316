"""Accuracy, speed and batch invariance of stored models, as a Markdown table.

    python -m experiments.invariance MODEL [MODEL ...] --run-dir runs/latest

MODEL is a stored model tag (`sentiment-classifier:latest`), a stored model's directory
(model.onnx + tokenizer.json + model_config.json) or a bare .onnx file (tokenizer and labels from
the run dir). For each: test accuracy, texts/s in this process (one ONNX Runtime thread,
length-sorted sub-batches of 8, interleaved best of `--rounds`), agreement with the first MODEL
(labels, largest and mean probability difference: list FP32 first), and how a text's scores
move with its batch mates: each of `--invariance-rows` test texts scored alone vs in batches of
8 in file order and in shuffled batches of 32 (max difference, texts more than 1e-4 apart, label
flips).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from export.invariance import batch_invariance

WAYS = (("file order, 8", 8, False), ("shuffled, 32", 32, True))  # of export.invariance.BATCHINGS


def load(source: str, run_dir: Path, threads: int = 1):
    """A `serving.inference.Classifier` for a tag, a stored model's directory or an .onnx file."""
    from serving.inference import Classifier, load_tokenizer, make_session

    path = Path(source)
    if path.suffix == ".onnx":
        info = json.loads((run_dir / "run_info.json").read_text())
        session = make_session(path, threads)
        tokenizer = load_tokenizer(run_dir / "model" / "tokenizer.json", info["max_length"])
        inputs = [i.name for i in session.get_inputs()]
        return Classifier(session, tokenizer, info["labels"], inputs)
    if not path.is_dir():
        import bentoml

        path = Path(bentoml.models.get(source).path)
    return Classifier.from_dir(path, threads=threads)


def invariance(runtime, texts: list[str], seed: int = 0) -> dict:
    """Each text alone vs inside `WAYS` batchings: max diff, texts > 1e-4, label flips (the
    export gate's check, `export.invariance.batch_invariance`, at this table's 1e-4)."""
    ways = batch_invariance(runtime, texts, tolerance=1e-4, seed=seed)["batchings"]
    return {
        name: (
            ways[name]["max_diff"],
            ways[name]["texts_over_tolerance"],
            ways[name]["label_flips"],
        )
        for name, _, _ in WAYS
    }


def measure(sources: list[str], run_dir: Path, rounds: int, invariance_rows: int) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").open()]
    texts, labels = [r["text"] for r in rows], np.array([r["label"] for r in rows])
    models = {s: load(s, run_dir) for s in sources}
    results = {s: {"model": s} for s in sources}
    for source, runtime in models.items():
        runtime.sub_batch_size = 8
        probs = runtime.probabilities(runtime.encode(texts))
        results[source]["accuracy"] = float(np.mean(probs.argmax(1) == labels))
        first = results[sources[0]].setdefault("probs", probs)
        results[source]["vs_first"] = (
            float(np.mean(probs.argmax(1) == first.argmax(1))),
            float(np.abs(probs - first).max()),
            float(np.abs(probs - first).mean()),
        )
        results[source]["invariance"] = invariance(runtime, texts[:invariance_rows])
        results[source]["texts_per_s"] = 0.0
    for _ in range(rounds):  # interleaved, best of `rounds`: a noisy neighbour hits all alike
        for source, runtime in models.items():
            start = time.perf_counter()
            runtime.probabilities(runtime.encode(texts))
            speed = len(texts) / (time.perf_counter() - start)
            results[source]["texts_per_s"] = max(results[source]["texts_per_s"], speed)
    return [results[s] for s in sources]


def table(results: list[dict], n_test: int, invariance_rows: int) -> str:
    head = [
        "model",
        f"test acc ({n_test})",
        "texts/s",
        "vs the first: agreement / max / mean prob diff",
        *(f"alone vs {name}: max diff / >1e-4 / flips" for name, _, _ in WAYS),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        agree, most, mean = r["vs_first"]
        cells = [f"`{r['model']}`", f"{r['accuracy']:.4f}", f"{r['texts_per_s']:.0f}"]
        cells.append(f"{agree:.2%} / {most:.3f} / {mean:.4f}")
        for name, _, _ in WAYS:
            diff, over, flips = r["invariance"][name]
            cells.append(f"{diff:.2g} / {over} / {flips}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Invariance on the first {invariance_rows} test texts, each scored alone.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.invariance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", help="stored model tags, model dirs or .onnx files")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("runs/latest"),
        help="training run dir: data/test.jsonl (and the tokenizer for .onnx files)",
    )
    p.add_argument("--rounds", type=int, default=3, help="timed passes per model (best kept)")
    p.add_argument("--invariance-rows", type=int, default=600)
    a = p.parse_args(argv)
    results = measure(a.models, a.run_dir, a.rounds, a.invariance_rows)
    n_test = sum(1 for _ in (a.run_dir / "data" / "test.jsonl").open())
    argv = sys.argv[1:] if argv is None else argv
    print(f"`python -m experiments.invariance {' '.join(argv)}`  ")
    print(
        f"run dir {a.run_dir.resolve()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, 1 ONNX Runtime thread\n"
    )
    print(table(results, n_test, a.invariance_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
