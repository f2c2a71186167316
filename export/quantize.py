"""INT8 dynamic quantization with Optimum's ORTQuantizer, configured for this CPU."""

from __future__ import annotations

import logging
import platform
from collections import Counter
from pathlib import Path

from export.config import ExportConfig

logger = logging.getLogger(__name__)

# Nodes that only exist in a quantized graph (QOperator format; dynamic, or static scales as
# export/static.py makes them).
QUANTIZED_OPS = (
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DynamicQuantizeMatMul",
    "QAttention",
)


def detect_isa(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> str:
    """Best instruction set Optimum has an AutoQuantizationConfig for: avx512_vnni > avx512 > avx2.

    Reads the CPU flags from /proc/cpuinfo (Linux) or py-cpuinfo when installed; arm64 machines
    give "arm64". Falls back to "avx2", the most portable x86 config.
    """
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags: set[str] = set()
    try:
        for line in cpuinfo_path.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if not flags:
        try:
            import cpuinfo  # py-cpuinfo, optional

            flags = set(cpuinfo.get_cpu_info().get("flags", []))
        except (ImportError, OSError, RuntimeError, ValueError):  # unknown: handled below
            flags = set()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if not flags:
        logger.warning("could not read the CPU flags; assuming avx2")
    return "avx2"


HEAD_NAME_PARTS = ("classifier", "pooler", "score")


def head_nodes(onnx_path: Path) -> list[str]:
    """Names of the classification head's MatMul / Gemm nodes (pooler, classifier).

    ORT's quantizer turns a Gemm `X` into a MatMul `X_MatMul` before quantizing, so both names
    are listed.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    names = []
    for node in graph.node:
        if node.op_type in ("Gemm", "MatMul") and any(p in node.name for p in HEAD_NAME_PARTS):
            names.append(node.name)
            if node.op_type == "Gemm":
                names.append(f"{node.name}_MatMul")
    return names


def activation_matmuls(onnx_path: Path) -> list[str]:
    """Names of the MatMul nodes whose second input is not a weight (e.g. Q x K^T, probs x V)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    weights |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] not in weights]


def quantization_config(config: ExportConfig, onnx_path: Path | None = None):
    """The Optimum `QuantizationConfig` (dynamic) that `config` asks for, and the ISA it targets.

    `onnx_path` is needed to find the nodes that `keep_head_fp32` / `weight_matmuls_only` exclude.
    """
    from optimum.onnxruntime import AutoQuantizationConfig

    isa = detect_isa() if config.isa == "auto" else config.isa
    exclude = list(config.nodes_to_exclude)
    if config.keep_head_fp32 and onnx_path is not None:
        exclude += [name for name in head_nodes(onnx_path) if name not in exclude]
    if config.weight_matmuls_only and onnx_path is not None:
        exclude += [name for name in activation_matmuls(onnx_path) if name not in exclude]
    kwargs = {
        "is_static": False,
        "per_channel": config.per_channel,
        "nodes_to_exclude": exclude,
        "operators_to_quantize": list(config.operators_to_quantize),
    }
    if isa in ("avx2", "avx512"):
        kwargs["reduce_range"] = config.reduce_range
    qconfig = getattr(AutoQuantizationConfig, isa)(**kwargs)
    if isa in ("avx512_vnni", "arm64") and config.reduce_range:
        qconfig.reduce_range = True
    return isa, qconfig


def describe(isa: str, qconfig) -> dict:
    """A JSON-able summary of a quantization config, for the model's metadata."""
    return {
        "isa": isa,
        "mode": "dynamic",
        "format": qconfig.format.name,
        "activations_dtype": qconfig.activations_dtype.name,
        "weights_dtype": qconfig.weights_dtype.name,
        "per_channel": qconfig.per_channel,
        "reduce_range": qconfig.reduce_range,
        "weights_symmetric": qconfig.weights_symmetric,
        "operators_to_quantize": [str(op) for op in qconfig.operators_to_quantize],
        "nodes_to_exclude": list(qconfig.nodes_to_exclude),
    }


def quantize(onnx_path: Path, out_dir: Path, config: ExportConfig) -> tuple[Path, dict]:
    """Quantize `onnx_path` to INT8 into `out_dir`; return the new graph's path and its settings."""
    from optimum.onnxruntime import ORTQuantizer

    isa, qconfig = quantization_config(config, onnx_path)
    logger.info("quantizing %s to INT8 for %s: %s", onnx_path.name, isa, qconfig)
    quantizer = ORTQuantizer.from_pretrained(onnx_path.parent, file_name=onnx_path.name)
    quantizer.quantize(quantization_config=qconfig, save_dir=out_dir, file_suffix="quantized")
    path = out_dir / f"{onnx_path.stem}_quantized.onnx"
    if not path.is_file():
        raise RuntimeError(f"ORTQuantizer wrote no {path.name} into {out_dir}")
    return path, describe(isa, qconfig)


def op_counts(onnx_path: Path) -> Counter:
    """How many nodes of each operator type the graph has (structure checks, metadata)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return Counter(node.op_type for node in model.graph.node)
