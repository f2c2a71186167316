"""Compare quantization settings on a run: `python -m export.compare [RUN_DIR]`.

Exports FP32 once, quantizes it with each named variant, and prints accuracy, agreement with
FP32, size and texts/s (interleaved best-of-N timing), so the default in `ExportConfig` is
chosen by measurement. Stores nothing.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from export.config import ExportConfig
from export.convert import export_onnx, optimize_onnx
from export.evaluate import OnnxClassifier, classification_metrics, compare, load_tokenizer
from export.quantize import quantize
from export.rundir import load_run_dir

ALL_DYNAMIC_OPS = [
    "Conv",
    "MatMul",
    "Attention",
    "LSTM",
    "Gather",
    "Transpose",
    "EmbedLayerNormalization",
]

LAST_FFN_OUT = "/bert/encoder/layer.5/output/dense/MatMul"  # MiniLM-L6's last FFN output
# name -> (ExportConfig overrides, graph: "plain" | "optimized")
VARIANTS: dict[str, tuple[dict, str]] = {
    "optimum-default-per-tensor": (
        {
            "per_channel": False,
            "operators_to_quantize": ALL_DYNAMIC_OPS,
            "keep_head_fp32": False,
            "weight_matmuls_only": False,
        },
        "plain",
    ),
    "per-channel": (
        {
            "operators_to_quantize": ALL_DYNAMIC_OPS,
            "keep_head_fp32": False,
            "weight_matmuls_only": False,
        },
        "plain",
    ),
    "per-channel-matmul": (
        {
            "operators_to_quantize": ["MatMul"],
            "keep_head_fp32": False,
            "weight_matmuls_only": False,
        },
        "plain",
    ),
    "per-channel-matmul-gather": ({"keep_head_fp32": False}, "plain"),
    "default: matmul+gather head-fp32": ({}, "plain"),
    "weight-matmuls-only+gather head-fp32": ({"weight_matmuls_only": True}, "plain"),
    "default + reduce_range": ({"reduce_range": True}, "plain"),
    "default on O2 graph (+Attention)": (
        {"operators_to_quantize": ["MatMul", "Attention", "Gather"]},
        "optimized",
    ),
    "avx2 config (u8/u8)": ({"isa": "avx2"}, "plain"),
    "default + last FFN-out fp32": ({"nodes_to_exclude": [LAST_FFN_OUT]}, "plain"),
    "default + reduce_range + last FFN-out fp32": (
        {"reduce_range": True, "nodes_to_exclude": [LAST_FFN_OUT]},
        "plain",
    ),
}


def compare_variants(
    run_dir: Path, names: list[str] | None = None, bench_rows: int = 512, repeats: int = 3
) -> list[dict]:
    """One result dict per variant (plus "fp32"), evaluated on validation + test rows."""
    run = load_run_dir(run_dir)
    rows = run.rows("validation") + run.rows("test")
    texts = [r["text"] for r in rows]
    labels = np.array([r["label"] for r in rows])
    tokenizer = load_tokenizer(run.model_dir / "tokenizer.json", run.max_length)
    names = names or list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="export-compare-") as tmp:
        work = Path(tmp)
        graphs = {"plain": export_onnx(run.model_dir, work / "fp32")}
        if any(VARIANTS[n][1] == "optimized" for n in names):
            graphs["optimized"] = optimize_onnx(graphs["plain"], work / "opt")
        paths = {"fp32": graphs["plain"]}
        for i, name in enumerate(names):
            overrides, graph = VARIANTS[name]
            paths[name], _ = quantize(graphs[graph], work / f"v{i}", ExportConfig(**overrides))
        clfs = {name: OnnxClassifier(p, tokenizer) for name, p in paths.items()}
        probs = {name: clf.predict_proba(texts) for name, clf in clfs.items()}
        speed = dict.fromkeys(clfs, 0.0)
        for _ in range(repeats):
            for name, clf in clfs.items():
                speed[name] = max(speed[name], clf.throughput(texts[-bench_rows:]))
        results = []
        for name in clfs:
            metrics = classification_metrics(labels, probs[name].argmax(1), len(run.labels))
            results.append(
                {
                    "variant": name,
                    "size_mb": paths[name].stat().st_size / 1e6,
                    "accuracy": metrics["accuracy"],
                    "macro_f1": metrics["macro_f1"],
                    **compare(probs["fp32"], probs[name]),
                    "texts_per_s": speed[name],
                }
            )
    return results


def format_results(results: list[dict]) -> str:
    fp32 = results[0]
    lines = [
        f"{'variant':36} {'MB':>6} {'acc':>7} {'Δacc pt':>8} {'agree':>7} {'max Δp':>7} {'texts/s':>8}"
    ]
    for r in results:
        lines.append(
            f"{r['variant']:36} {r['size_mb']:6.1f} {r['accuracy']:7.4f} "
            f"{100 * (r['accuracy'] - fp32['accuracy']):+8.2f} {r['agreement']:7.2%} "
            f"{r['max_prob_diff']:7.4f} {r['texts_per_s']:8.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.compare", description=__doc__)
    p.add_argument("run_dir", nargs="?", type=Path, default=Path("runs/latest"))
    p.add_argument("--variants", default="", help="comma-separated names (default: all)")
    p.add_argument("--bench-rows", type=int, default=512)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    names = [n.strip() for n in a.variants.split(",") if n.strip()] or None
    unknown = [n for n in names or [] if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    print(format_results(compare_variants(a.run_dir, names, a.bench_rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
