"""FP32 ONNX export with Optimum, and optional offline ONNX Runtime graph optimization."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

TASK = "text-classification"


def export_onnx(model_dir: Path, out_dir: Path, opset: int | None = None) -> Path:
    """Export the HF model in `model_dir` to `out_dir/model.onnx` (dynamic batch and sequence axes).

    Optimum checks the ONNX outputs against PyTorch on a dummy input while exporting.
    """
    from optimum.exporters.onnx import main_export

    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info("exporting %s to ONNX (%s)", model_dir, TASK)
    main_export(
        str(model_dir),
        output=out_dir,
        task=TASK,
        opset=opset,
        device="cpu",
        local_files_only=True,
        library_name="transformers",
    )
    path = out_dir / "model.onnx"
    if not path.is_file():
        raise RuntimeError(f"Optimum export wrote no model.onnx into {out_dir}")
    return path


def optimize_onnx(onnx_path: Path, out_dir: Path, level: str = "O2") -> Path:
    """Apply Optimum's ORTOptimizer at `level` (O1/O2/O3, CPU) and return the optimized graph."""
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    logger.info("optimizing %s with ORTOptimizer %s", onnx_path.name, level)
    optimizer = ORTOptimizer.from_pretrained(onnx_path.parent, file_names=[onnx_path.name])
    config = AutoOptimizationConfig.with_optimization_level(level, for_gpu=False)
    optimizer.optimize(config, save_dir=out_dir, file_suffix="optimized")
    path = out_dir / f"{onnx_path.stem}_optimized.onnx"
    if not path.is_file():
        raise RuntimeError(f"ORTOptimizer wrote no {path.name} into {out_dir}")
    _infer_shapes(path)
    return path


def _infer_shapes(path: Path) -> None:
    """Annotate tensor types in place, fused com.microsoft ops included, so it can be quantized.

    ONNX's own shape inference stops at ORT's fused operators (Attention, SkipLayerNormalization);
    ORT's symbolic shape inference knows them.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = SymbolicShapeInference.infer_shapes(onnx.load(str(path)), auto_merge=True)
    onnx.save(model, str(path))
