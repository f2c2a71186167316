"""Compare quantization settings on a run: `python -m experiments.quantization [RUN_DIR]`.

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

from common.metrics import classification_metrics
from export.config import ExportConfig
from export.convert import export_onnx, optimize_onnx
from export.evaluate import OnnxClassifier, compare, load_tokenizer
from export.quantize import quantize
from export.rundir import load_run_dir
from export.smooth import calibration_texts, smooth_graph

SERVICE_SUB_BATCH = 8  # texts per ONNX Runtime call: dynamic INT8 depends on the batch

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
# name -> (ExportConfig overrides, graph: "plain" | "optimized" | "smoothed"). "plain" variants
# quantize the FP32 export as it is; "smoothed" ones first apply export/smooth.py (the default).
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
    "matmul+gather head-fp32 (no smoothing)": ({}, "plain"),
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
    "default: smoothed matmul+gather head-fp32": ({}, "smoothed"),
    "smoothed + weight-matmuls-only": ({"weight_matmuls_only": True}, "smoothed"),
    "smoothed + reduce_range": ({"reduce_range": True}, "smoothed"),
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
    with tempfile.TemporaryDirectory(prefix="quantization-") as tmp:
        work = Path(tmp)
        graphs = {"plain": export_onnx(run.model_dir, work / "fp32")}
        if any(VARIANTS[n][1] == "optimized" for n in names):
            graphs["optimized"] = optimize_onnx(graphs["plain"], work / "opt")
        if any(VARIANTS[n][1] == "smoothed" for n in names):
            config = ExportConfig()
            texts_cal = calibration_texts(run.rows("train"), config.calibration_rows)
            graphs["smoothed"], _ = smooth_graph(
                graphs["plain"], work / "smoothed", tokenizer, texts_cal, config
            )
        paths = {"fp32": graphs["plain"]}
        for i, name in enumerate(names):
            overrides, graph = VARIANTS[name]
            paths[name], _ = quantize(graphs[graph], work / f"v{i}", ExportConfig(**overrides))
        clfs = {name: OnnxClassifier(p, tokenizer) for name, p in paths.items()}
        probs = {name: clf.predict_proba(texts) for name, clf in clfs.items()}
        probs_small = {
            name: clf.predict_proba(texts, SERVICE_SUB_BATCH) for name, clf in clfs.items()
        }
        speed = dict.fromkeys(clfs, 0.0)
        for _ in range(repeats):
            for name, clf in clfs.items():
                speed[name] = max(speed[name], clf.throughput(texts[-bench_rows:]))
        results = []
        for name in clfs:
            metrics = classification_metrics(labels, probs[name], run.labels)
            results.append(
                {
                    "variant": name,
                    "size_mb": paths[name].stat().st_size / 1e6,
                    "accuracy": metrics["accuracy"],
                    "macro_f1": metrics["macro_f1"],
                    **compare(probs["fp32"], probs[name]),
                    "agreement_bs8": compare(probs["fp32"], probs_small[name])["agreement"],
                    "texts_per_s": speed[name],
                }
            )
    return results


def format_results(results: list[dict]) -> str:
    fp32 = results[0]
    header = (
        f"{'variant':44} {'MB':>6} {'acc':>7} {'Δacc pt':>8} {'agree':>7} {'bs8':>7} "
        f"{'max Δp':>7} {'texts/s':>8}"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"{r['variant']:44} {r['size_mb']:6.1f} {r['accuracy']:7.4f} "
            f"{100 * (r['accuracy'] - fp32['accuracy']):+8.2f} {r['agreement']:7.2%} "
            f"{r['agreement_bs8']:7.2%} "
            f"{r['max_prob_diff']:7.4f} {r['texts_per_s']:8.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.quantization", description=__doc__)
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
