"""`python -m export [RUN_DIR] [options]`: ONNX export, INT8 quantization, accuracy and
batch-invariance gates, store."""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from common.cli import comma_list, config_from_args, with_default
from export.config import (
    ACTIVATION_SCALES,
    CALIBRATION_METHODS,
    ISAS,
    OPTIMIZE_MODES,
    ExportConfig,
)


def parse_args(argv: list[str] | None = None) -> tuple[Path, ExportConfig]:
    d = partial(with_default, ExportConfig)  # "text (default: X)", X from ExportConfig
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    p.add_argument(
        "run_dir",
        nargs="?",
        type=Path,
        default=Path("runs/latest"),
        help="training run directory (default: runs/latest)",
    )
    p.add_argument("--name", dest="model_name", help=d("model_name", "BentoML model name"))
    p.add_argument(
        "--no-quantize",
        dest="quantize",
        action="store_false",
        default=None,
        help="store the FP32 graph",
    )
    p.add_argument(
        "--activation-scales",
        choices=ACTIVATION_SCALES,
        help=d(
            "activation_scales",
            "static: calibrated once, a text's scores do not depend on its batch mates; "
            "dynamic: per call, needs --allow-batch-dependence",
        ),
    )
    p.add_argument(
        "--calibration-method",
        choices=CALIBRATION_METHODS,
        help=d("calibration_method", "how the static scales are calibrated"),
    )
    p.add_argument(
        "--calibration-percentile",
        type=float,
        help=d("calibration_percentile", "with --calibration-method percentile"),
    )
    p.add_argument(
        "--isa", choices=ISAS, help=d("isa", "CPU instruction set to quantize for; auto: detect")
    )
    p.add_argument(
        "--per-tensor",
        dest="per_channel",
        action="store_false",
        default=None,
        help="per-tensor instead of per-channel",
    )
    p.add_argument(
        "--reduce-range", action="store_true", default=None, help="7-bit weights (old AVX512 CPUs)"
    )
    p.add_argument(
        "--operators",
        dest="operators_to_quantize",
        type=comma_list,
        help=d("operators_to_quantize", "ONNX operators to quantize, comma-separated"),
    )
    p.add_argument(
        "--exclude-nodes",
        dest="nodes_to_exclude",
        type=comma_list,
        help="node names to keep FP32, comma-separated",
    )
    p.add_argument(
        "--no-smooth",
        dest="smooth",
        action="store_false",
        default=None,
        help="skip SmoothQuant-style activation smoothing before quantizing",
    )
    p.add_argument(
        "--smooth-pattern",
        help="regex on node names of the weight MatMuls to smooth "
        "(default: every weight MatMul of the encoder, found in the graph)",
    )
    p.add_argument(
        "--calibration-rows",
        type=int,
        help=d(
            "calibration_rows",
            "training texts that calibrate the smoothing and the static activation scales",
        ),
    )
    p.add_argument(
        "--quantize-head",
        dest="keep_head_fp32",
        action="store_false",
        default=None,
        help="quantize the pooler/classifier head too (default: keep it FP32)",
    )
    p.add_argument(
        "--optimize",
        choices=OPTIMIZE_MODES,
        help=d("optimize", "ORT graph optimization: auto keeps it only if faster"),
    )
    p.add_argument("--optimization-level", choices=("O1", "O2", "O3"), help=d("optimization_level"))
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        help=d("max_accuracy_drop", "refuse INT8 test accuracy this many points below FP32"),
    )
    p.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="store even if a gate fails (dynamic scales need --allow-batch-dependence)",
    )
    p.add_argument(
        "--invariance-rows",
        type=int,
        help=d("invariance_rows", "test texts the batch-invariance gate scores"),
    )
    p.add_argument(
        "--allow-batch-dependence",
        action="store_true",
        default=None,
        help="store a model whose scores depend on a text's batch mates "
        "(--activation-scales dynamic fails the invariance gate by construction)",
    )
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all)")
    p.add_argument("--batch-size", type=int, help=d("batch_size", "texts per ONNX Runtime call"))
    p.add_argument("--max-eval-rows", type=int, help="cap rows per split")
    p.add_argument("--work-dir", type=Path, help="keep intermediate ONNX files here")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    a = p.parse_args(argv)
    config = config_from_args(ExportConfig, a)
    # Our progress at INFO; onnxruntime's quantizer logs every tensor at INFO on the root logger.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("export").setLevel(logging.WARNING if a.quiet else logging.INFO)
    return a.run_dir, config


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 stored, 1 a gate (accuracy, batch invariance) refused, 2 bad run dir or
    arguments."""
    try:
        run_dir, config = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from export.pipeline import AccuracyGateError, InvarianceGateError, run_export
    from export.rundir import RunDirError

    try:
        report = run_export(run_dir, config)
    except RunDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (AccuracyGateError, InvarianceGateError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
