"""Export stage: training run dir -> ONNX (Optimum) -> INT8 (static activation scales) -> accuracy
and batch-invariance gates -> BentoML model store.

Heavy libraries (optimum, onnxruntime, bentoml) are imported inside the functions that use them.
"""

from export.config import ExportConfig
from export.convert import export_onnx, optimize_onnx
from export.evaluate import OnnxClassifier, evaluate_onnx, load_tokenizer
from export.pipeline import (
    AccuracyGateError,
    ExportReport,
    InvarianceGateError,
    export_run,
    run_export,
)
from export.quantize import detect_isa, quantize
from export.rundir import RunDirError, load_run_dir
from export.store import STORED_FILES, save_to_store

__all__ = [
    "STORED_FILES",
    "AccuracyGateError",
    "ExportConfig",
    "ExportReport",
    "InvarianceGateError",
    "OnnxClassifier",
    "RunDirError",
    "detect_isa",
    "evaluate_onnx",
    "export_onnx",
    "export_run",
    "load_run_dir",
    "load_tokenizer",
    "optimize_onnx",
    "quantize",
    "run_export",
    "save_to_store",
]
