"""`python -m export [RUN_DIR] [options]`: ONNX export, INT8 quantization, accuracy gate, store."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.cli import comma_list, config_from_args
from export.config import ISAS, OPTIMIZE_MODES, ExportConfig


def parse_args(argv: list[str] | None = None) -> tuple[Path, ExportConfig]:
    d = ExportConfig()
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    p.add_argument(
        "run_dir",
        nargs="?",
        type=Path,
        default=Path("runs/latest"),
        help="training run directory (default: runs/latest)",
    )
    p.add_argument("--name", dest="model_name", help=f"BentoML model name (default {d.model_name})")
    p.add_argument("--no-quantize", dest="quantize", action="store_false", default=None,
                   help="store the FP32 graph")  # fmt: skip
    p.add_argument(
        "--isa", choices=ISAS, help="CPU instruction set to quantize for (default: detect)"
    )
    p.add_argument("--per-tensor", dest="per_channel", action="store_false", default=None,
                   help="per-tensor instead of per-channel")  # fmt: skip
    p.add_argument("--reduce-range", action="store_true", default=None,
                   help="7-bit weights (old AVX512 CPUs)")  # fmt: skip
    p.add_argument(
        "--operators",
        dest="operators_to_quantize",
        type=comma_list,
        help=f"ONNX operators to quantize, comma-separated (default: {','.join(d.operators_to_quantize)})",
    )
    p.add_argument("--exclude-nodes", dest="nodes_to_exclude", type=comma_list,
                   help="node names to keep FP32, comma-separated")  # fmt: skip
    p.add_argument("--no-smooth", dest="smooth", action="store_false", default=None,
                   help="skip SmoothQuant-style activation smoothing before quantizing")  # fmt: skip
    p.add_argument(
        "--smooth-pattern",
        help="regex on node names of the weight MatMuls to smooth "
        "(default: every weight MatMul of the encoder, found in the graph)",
    )
    p.add_argument(
        "--calibration-rows",
        type=int,
        help=f"training texts used to calibrate the smoothing (default: {d.calibration_rows})",
    )
    p.add_argument("--quantize-head", dest="keep_head_fp32", action="store_false", default=None,
                   help="quantize the pooler/classifier head too (default: keep it FP32)")  # fmt: skip
    p.add_argument("--optimize", choices=OPTIMIZE_MODES,
                   help="ORT graph optimization: auto keeps it only if faster (default: auto)")  # fmt: skip
    p.add_argument("--optimization-level", choices=("O1", "O2", "O3"))
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        help=f"refuse INT8 test accuracy this many points below FP32 (default: {d.max_accuracy_drop})",
    )
    p.add_argument("--force", action="store_true", default=None,
                   help="store even if the accuracy gate fails")  # fmt: skip
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: all)")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
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
