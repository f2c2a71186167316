"""`python -m export [RUN_DIR] [options]`: ONNX export, INT8 quantization, accuracy gate, store."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from export.config import ISAS, OPTIMIZE_MODES, ExportConfig


def parse_args(argv: list[str] | None = None) -> tuple[Path, ExportConfig]:
    defaults = ExportConfig()
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    p.add_argument(
        "run_dir",
        nargs="?",
        type=Path,
        default=Path("runs/latest"),
        help="training run directory (default: runs/latest)",
    )
    p.add_argument("--name", default=defaults.model_name, help="BentoML model name")
    p.add_argument("--no-quantize", action="store_true", help="store the FP32 graph")
    p.add_argument(
        "--isa",
        choices=ISAS,
        default=defaults.isa,
        help="CPU instruction set to quantize for (default: detect)",
    )
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (old AVX512 CPUs)")
    p.add_argument(
        "--operators",
        default=",".join(defaults.operators_to_quantize),
        help="ONNX operators to quantize, comma-separated (default: %(default)s)",
    )
    p.add_argument("--exclude-nodes", default="", help="node names to keep FP32, comma-separated")
    p.add_argument(
        "--no-smooth",
        action="store_true",
        help="skip SmoothQuant-style activation smoothing before quantizing",
    )
    p.add_argument(
        "--smooth-pattern",
        default=defaults.smooth_pattern,
        help="regex on node names of the weight MatMuls to smooth (default: %(default)s)",
    )
    p.add_argument(
        "--calibration-rows",
        type=int,
        default=defaults.calibration_rows,
        help="training texts used to calibrate the smoothing (default: %(default)s)",
    )
    p.add_argument(
        "--quantize-head",
        action="store_true",
        help="quantize the pooler/classifier head too (default: keep it FP32)",
    )
    p.add_argument(
        "--optimize",
        choices=OPTIMIZE_MODES,
        default=defaults.optimize,
        help="ORT graph optimization: auto keeps it only if faster (default: auto)",
    )
    p.add_argument(
        "--optimization-level", choices=("O1", "O2", "O3"), default=defaults.optimization_level
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=defaults.max_accuracy_drop,
        help="refuse INT8 test accuracy this many points below FP32 (default: 0.5)",
    )
    p.add_argument("--force", action="store_true", help="store even if the accuracy gate fails")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--max-eval-rows", type=int, default=None, help="cap rows per split")
    p.add_argument("--work-dir", type=Path, default=None, help="keep intermediate ONNX files here")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    a = p.parse_args(argv)
    config = ExportConfig(
        model_name=a.name,
        quantize=not a.no_quantize,
        isa=a.isa,
        per_channel=not a.per_tensor,
        reduce_range=a.reduce_range,
        operators_to_quantize=[op.strip() for op in a.operators.split(",") if op.strip()],
        nodes_to_exclude=[n.strip() for n in a.exclude_nodes.split(",") if n.strip()],
        keep_head_fp32=not a.quantize_head,
        smooth=not a.no_smooth,
        smooth_pattern=a.smooth_pattern,
        calibration_rows=a.calibration_rows,
        optimize=a.optimize,
        optimization_level=a.optimization_level,
        max_accuracy_drop=a.max_accuracy_drop,
        force=a.force,
        threads=a.threads,
        batch_size=a.batch_size,
        max_eval_rows=a.max_eval_rows,
        work_dir=a.work_dir,
    )
    # Our progress at INFO; onnxruntime's quantizer logs every tensor at INFO on the root logger.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("export").setLevel(logging.WARNING if a.quiet else logging.INFO)
    return a.run_dir, config


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 stored, 1 accuracy gate refused, 2 bad run dir or arguments."""
    try:
        run_dir, config = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from export.pipeline import AccuracyGateError, run_export
    from export.rundir import RunDirError

    try:
        report = run_export(run_dir, config)
    except RunDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except AccuracyGateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
