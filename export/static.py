"""Static activation scales: INT8 whose answer for a text does not depend on its batch mates.

ONNX Runtime's dynamic quantization (`DynamicQuantizeLinear`) computes each MatMul input's uint8
range from the whole tensor of the call, so a text's scores move with the other rows (and the
padding) it runs beside. Here the same quantized graph keeps its int8 weights and its integer
MatMuls, but every `DynamicQuantizeLinear` becomes a `QuantizeLinear` with a constant scale and
zero point calibrated on training texts: the quantization of a row no longer reads the other rows,
integer MatMuls are exact, and the rest of the graph (LayerNorm, softmax, masked attention) is
row-wise in FP32. ONNX Runtime fuses `MatMulInteger` + `Cast` + `Mul` with a constant scale into
`MatMulIntegerToFloat`, the same kernels the dynamic graph runs, without the per-call min/max pass.

Calibration runs the float graph the INT8 graph was made from on one text per call (no padding,
so padded positions never enter a range) and records every quantized tensor's range:

- "minmax": the smallest and largest value over all calibration texts.
- "percentile": per text the smallest and largest value, then the `percentile`-th percentile of
  those over the texts: a rare text's outlier is clipped instead of coarsening every text's steps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from export.config import CALIBRATION_METHODS

logger = logging.getLogger(__name__)


class TextCalibrationReader:
    """ONNX feeds for calibration, one text per call (unpadded), as onnxruntime's
    `CalibrationDataReader` protocol asks (`get_next` returns None when done)."""

    def __init__(self, tokenizer, texts: Sequence[str], input_names: Sequence[str]):
        from serving.inference import pad_batch

        if not texts:
            raise ValueError("calibration needs at least one text")
        self.input_names = list(input_names)
        self._feeds = [
            pad_batch([e], self.input_names) for e in tokenizer.encode_batch(list(texts))
        ]
        self._next = 0

    def __len__(self) -> int:
        return len(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (feed := self.get_next()) is not None:
            yield feed


def dynamic_inputs(onnx_path: Path) -> list[str]:
    """The float tensors a dynamically quantized graph quantizes per call."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.input[0] for n in graph.node if n.op_type == "DynamicQuantizeLinear"]


def activation_ranges(
    float_path: Path,
    tensors: Sequence[str],
    reader: TextCalibrationReader,
    method: str = "percentile",
    percentile: float = 99.0,
) -> dict[str, tuple[float, float]]:
    """(min, max) of each of `tensors` in the float graph over the calibration texts of `reader`."""
    from export.smooth import tapped_session

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    session = tapped_session(float_path, tensors)
    names = list(tensors)
    lows, highs = [], []
    for feed in reader:
        outputs = session.run(names, feed)
        lows.append([float(x.min()) for x in outputs])
        highs.append([float(x.max()) for x in outputs])
    lo, hi = np.array(lows), np.array(highs)  # [texts, tensors]
    if method == "minmax":
        lo, hi = lo.min(axis=0), hi.max(axis=0)
    else:
        lo, hi = np.percentile(lo, 100 - percentile, axis=0), np.percentile(hi, percentile, axis=0)
    return {name: (float(a), float(b)) for name, a, b in zip(names, lo, hi, strict=True)}


def uint8_params(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """Scale and zero point of uint8 quantization over [lo, hi], widened to hold 0, exactly as
    ONNX's `DynamicQuantizeLinear` computes them from a tensor's own range."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / 255.0) or np.float32(1.0)
    zero = np.uint8(np.clip(np.round(-lo / scale), 0, 255))
    return scale, zero


def freeze_scales(
    dynamic_path: Path, ranges: dict[str, tuple[float, float]], out_path: Path
) -> dict[str, int]:
    """Write `dynamic_path` with each `DynamicQuantizeLinear` replaced by a `QuantizeLinear` with
    the constant scale and zero point of its input's calibrated range; return op counts changed."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(dynamic_path))
    nodes, inits, frozen = [], [], 0
    for node in model.graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        source = node.input[0]
        if source not in ranges:
            raise ValueError(f"no calibrated range for {source!r} (input of {node.name})")
        scale, zero = uint8_params(*ranges[source])
        y, y_scale, y_zero = node.output
        inits.append(numpy_helper.from_array(np.array(scale, np.float32), y_scale))
        inits.append(numpy_helper.from_array(np.array(zero, np.uint8), y_zero))
        nodes.append(
            helper.make_node("QuantizeLinear", [source, y_scale, y_zero], [y], name=node.name)
        )
        frozen += 1
    vectors = {i.name for i in model.graph.initializer if len(i.dims) == 1}
    nodes, fused = fuse_matmul_integer_to_float(nodes, vectors)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    if fused and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return {"frozen": frozen, "fused": fused}


def fuse_matmul_integer_to_float(nodes: list, biases: set[str]) -> tuple[list, int]:
    """Rewrite each `MatMulInteger -> Cast -> Mul(a_scale * b_scale) [-> Add(bias)]` chain of
    ORT's quantizer as one `com.microsoft.MatMulIntegerToFloat`, the kernel ORT runs for the
    dynamic graph (`biases`: names of 1-D initializers an Add may take as the bias).

    ORT fuses that chain itself only while the scale product is computed in the graph; once the
    activation scale is a constant, constant folding turns the product into an initializer first
    and the chain would run as three kernels (measured ~10% slower on MiniLM).
    """
    from onnx import helper

    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    drop, replace = set(), {}
    for mm in nodes:
        if mm.op_type != "MatMulInteger" or len(mm.input) != 4:
            continue
        (cast,) = consumers.get(mm.output[0], [None])[:1] or [None]
        if cast is None or cast.op_type != "Cast" or len(consumers[mm.output[0]]) != 1:
            continue
        users = consumers.get(cast.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        mul = users[0]
        other = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
        scales = producer.get(other)
        if scales is None or scales.op_type != "Mul" or len(consumers[other]) != 1:
            continue
        a, b, a_zero, b_zero = mm.input
        a_scale, b_scale = scales.input
        inputs, output = [a, b, a_scale, b_scale, a_zero, b_zero], mul.output[0]
        adds = consumers.get(output, [])
        if len(adds) == 1 and adds[0].op_type == "Add":
            bias = adds[0].input[1] if adds[0].input[0] == output else adds[0].input[0]
            if bias in biases:
                inputs.append(bias)
                output = adds[0].output[0]
                drop.add(id(adds[0]))
        replace[id(mm)] = helper.make_node(
            "MatMulIntegerToFloat",
            inputs,
            [output],
            name=mm.name,
            domain="com.microsoft",
        )
        drop |= {id(cast), id(mul), id(scales)}
    out = [replace.get(id(n), n) for n in nodes if id(n) not in drop]
    return out, len(replace)


def static_quantize(
    float_path: Path,
    out_dir: Path,
    config,
    tokenizer,
    texts: Sequence[str],
) -> tuple[Path, dict]:
    """INT8 with static activation scales: ORT's quantizer as `config` (an ExportConfig) asks,
    then every per-call activation range frozen to its calibration on `texts`."""
    import onnx

    from export.quantize import quantize

    dynamic_path, info = quantize(float_path, out_dir / "dynamic", config)
    tensors = dynamic_inputs(dynamic_path)
    inputs = [i.name for i in onnx.load(str(float_path), load_external_data=False).graph.input]
    reader = TextCalibrationReader(tokenizer, texts, inputs)
    ranges = activation_ranges(
        float_path, tensors, reader, config.calibration_method, config.calibration_percentile
    )
    out_path = out_dir / dynamic_path.name
    freeze_scales(dynamic_path, ranges, out_path)
    info = {
        **info,
        "mode": "static",
        "activation_scales": "static",
        "calibration": {
            "method": config.calibration_method,
            "percentile": config.calibration_percentile
            if config.calibration_method == "percentile"
            else None,
            "rows": len(texts),
            "tensors": len(tensors),
        },
    }
    return out_path, info
