"""SmoothQuant-style activation smoothing before INT8 quantization.

INT8 quantization gives each MatMul input ONE uint8 range (per call with dynamic scales, once
with the static scales of export/static.py). In a fine-tuned BERT a
few hidden channels carry outliers 10-20x larger than the rest (measured on MiniLM-L6: the
post-attention LayerNorm output that feeds the FFN reaches ~30 in one channel while the median
channel stays under 2; the GELU output that feeds the FFN output projection reaches ~25), so that
one channel sets the step size and every other channel is quantized coarsely.

Smoothing (Xiao et al., "SmoothQuant", 2023) moves that range from the activation into the
weight, which is quantized per output channel and tolerates it: for a MatMul `X @ W` it inserts
`X' = X * (1 / s)` and stores `W' = diag(s) @ W`, so `X' @ W' == X @ W` exactly in FP32, with

    s_c = max|X_c| ** alpha / max|W_c,:| ** (1 - alpha)

where max|X_c| is calibrated on a few hundred training texts. The graph gains one elementwise
Mul per smoothed input (cheap next to the MatMul) and no weights, so the INT8 file size does not
change. Consumers of the same activation (e.g. query/key/value) share one Mul and one `s`.

The classic rule (alpha = 0.5 from max|W|) made the FFN output projection worse here: its weight
rows differ by ~60x in magnitude, so balancing maxima un-balances the activation. So alpha is
searched per MatMul group (like AWQ): the value whose simulated INT8 output (per-tensor uint8
activations, per-column int8 weights) is closest to FP32 on the calibration batches, or none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SMOOTH_SUFFIX = "/smooth/Mul"
DEFAULT_ALPHAS = (0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def weight_matmuls(model) -> list:
    """The encoder's weight MatMuls, found from the graph whatever the architecture's node names:
    MatMul nodes whose second input is a 2-D weight (an initializer), outside the classification
    head (pooler / classifier, matched by name as in `quantize.head_nodes`). Attention's
    activation x activation MatMuls hold no weight and are not listed."""
    from export.quantize import HEAD_NAME_PARTS

    matrices = {init.name for init in model.graph.initializer if len(init.dims) == 2}
    return [
        node
        for node in model.graph.node
        if node.op_type == "MatMul"
        and node.input[1] in matrices
        and not any(part in node.name for part in HEAD_NAME_PARTS)
    ]


def smoothable_matmuls(model, pattern: str | None = None) -> dict[str, list]:
    """Weight MatMuls grouped by their activation input: those `weight_matmuls` finds, or, with
    `pattern`, those whose node name matches that regex (an override)."""
    if pattern is None:
        nodes = weight_matmuls(model)
    else:
        weights = {init.name for init in model.graph.initializer}
        regex = re.compile(pattern)
        nodes = [
            n
            for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in weights and regex.search(n.name)
        ]
    groups: dict[str, list] = {}
    for node in nodes:
        groups.setdefault(node.input[0], []).append(node)
    return groups


def tapped_session(onnx_path: Path, tensors: Sequence[str]) -> Any:
    """An unoptimized ONNX Runtime session of the FP32 graph that also outputs the named
    intermediate tensors (smoothing and the static scales' calibration read them)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    known = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def capture_activations(
    onnx_path: Path, tensors: Sequence[str], feeds: Sequence[dict[str, np.ndarray]]
) -> dict[str, list[np.ndarray]]:
    """The named intermediate tensors of the FP32 graph, one [tokens, channels] array per batch."""
    session = tapped_session(onnx_path, tensors)
    inputs = {i.name for i in session.get_inputs()}
    captured: dict[str, list[np.ndarray]] = {name: [] for name in tensors}
    for feed in feeds:
        outputs = session.run(list(tensors), {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(tensors, outputs, strict=True):
            captured[name].append(value.reshape(-1, value.shape[-1]))
    return captured


def fake_quant_activation(x: np.ndarray) -> np.ndarray:
    """ONNX DynamicQuantizeLinear then dequantize: one uint8 range over the whole tensor."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def fake_quant_weight(w: np.ndarray) -> np.ndarray:
    """Symmetric int8 per output channel (column), as ORT's per-channel MatMul quantization."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -127, 127) * scale


def quantization_error(
    batches: Sequence[np.ndarray], weights: Sequence[np.ndarray], scale: np.ndarray | None
) -> float:
    """Squared error of the INT8-simulated `X @ W` against FP32, summed over batches and weights."""
    qweights = [fake_quant_weight(w if scale is None else w * scale[:, None]) for w in weights]
    err = 0.0
    for x in batches:
        qx = fake_quant_activation(x if scale is None else x / scale)
        for w, qw in zip(weights, qweights, strict=True):
            err += float(np.sum((qx @ qw - x @ w) ** 2))
    return err


def search_scale(
    batches: Sequence[np.ndarray], weights: Sequence[np.ndarray], alphas: Sequence[float]
) -> tuple[float, np.ndarray, float]:
    """The smoothing strength in `alphas` with the least simulated INT8 error.

    Returns (alpha, per-input-channel scale, error relative to no smoothing): a relative error of
    1 or more means smoothing does not help this group.
    """
    if not alphas:
        raise ValueError("search_scale needs at least one alpha")
    x_max = np.max([np.abs(x).max(axis=0) for x in batches], axis=0)
    w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
    x_max, w_max = np.maximum(x_max, 1e-5), np.maximum(w_max, 1e-5)
    base = quantization_error(batches, weights, None) or 1e-30
    best = None
    for alpha in alphas:
        scale = (x_max**alpha / w_max ** (1 - alpha)).astype(np.float32)
        scale /= np.exp(np.mean(np.log(scale)))  # geometric mean 1: keeps magnitudes familiar
        err = quantization_error(batches, weights, scale) / base
        if best is None or err < best[2]:
            best = (float(alpha), scale, float(err))
    return best


def smooth(
    onnx_path: Path,
    out_path: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    pattern: str | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    min_gain: float = 0.9,
) -> dict:
    """Write a smoothed copy of `onnx_path` to `out_path` (same outputs in FP32); return a summary.

    For every group of encoder weight MatMuls (`smoothable_matmuls`: found in the graph, or
    matching the regex `pattern`) that share an input, the strength
    `alpha` is chosen from `alphas` by the simulated INT8 error on the calibration batches `feeds`
    (ONNX input name -> int64 array, e.g. from `calibration_feeds`); a group is smoothed only if
    that error drops below `min_gain` x the error without smoothing.

    A graph with no such MatMul is not smoothed: nothing is written, a warning gives the reason
    and the summary holds it under "skipped".
    """
    import onnx
    from onnx import numpy_helper

    if not feeds:
        raise ValueError("smoothing needs at least one calibration batch")
    if any(not 0.0 < a < 1.0 for a in alphas):
        raise ValueError(f"alphas must lie in (0, 1), got {list(alphas)}")
    model = onnx.load(str(onnx_path))
    groups = smoothable_matmuls(model, pattern)
    if not groups:
        reason = (
            f"no weight MatMul matches the smoothing pattern {pattern!r}"
            if pattern is not None
            else "the graph has no weight MatMul outside the classification head"
        )
        logger.warning("smoothing skipped: %s", reason)
        return {"pattern": pattern, "skipped": reason, "matmuls": {}}
    acts = capture_activations(onnx_path, list(groups), feeds)
    inits = {init.name: init for init in model.graph.initializer}
    weight_users: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            weight_users[name] = weight_users.get(name, 0) + 1

    new_inits, summary = [], {}
    mul_before: dict[str, object] = {}  # first consumer's name -> the Mul to insert before it
    for tensor, nodes in groups.items():
        weights = {n.input[1]: numpy_helper.to_array(inits[n.input[1]]) for n in nodes}
        alpha, scale, rel_err = search_scale(acts.pop(tensor), list(weights.values()), alphas)
        applied = rel_err < min_gain
        for node in nodes:
            summary[node.name] = {
                "alpha": alpha if applied else None,
                "relative_error": round(rel_err, 4) if applied else 1.0,
            }
        if not applied:
            continue
        base = nodes[0].name.rsplit("/", 1)[0]
        inv_name = f"{base}/smooth/inv_scale"
        out_name = f"{base}/smooth/Mul_output_0"
        new_inits.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv_name))
        mul_before[nodes[0].name] = onnx.helper.make_node(
            "Mul", [tensor, inv_name], [out_name], name=f"{base}{SMOOTH_SUFFIX}"
        )
        for node in nodes:
            w_name = node.input[1]
            smoothed = (weights[w_name] * scale[:, None]).astype(np.float32)
            if weight_users.get(w_name, 0) > 1:  # shared weight: give this node its own copy
                w_name = f"{w_name}/smoothed/{node.name}"
                node.input[1] = w_name
                new_inits.append(numpy_helper.from_array(smoothed, w_name))
            else:
                inits[w_name].CopyFrom(numpy_helper.from_array(smoothed, w_name))
            node.input[0] = out_name
    nodes = []
    for node in model.graph.node:
        if node.name in mul_before:
            nodes.append(mul_before[node.name])
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_inits)
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    logger.info("smoothed %d of %d MatMuls into %s", len(mul_before), len(summary), out_path)
    return {"pattern": pattern, "alphas": list(alphas), "matmuls": summary}


def calibration_texts(rows: Sequence[dict], n: int, seed: int = 0) -> list[str]:
    """`n` texts drawn at random (fixed seed) from `rows`: files are often sorted by label."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i]["text"] for i in sorted(idx)]


def smooth_graph(onnx_path: Path, out_dir: Path, tokenizer, texts: Sequence[str], config) -> tuple:
    """Smooth `onnx_path` into `out_dir/model.onnx` as `config` (an ExportConfig) asks.

    Returns (path, summary): `onnx_path` itself when there was nothing to smooth (the summary
    says why under "skipped"). The HF config.json next to the graph is copied along, so Optimum's
    ORTQuantizer finds it.
    """
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    for extra in ("config.json",):
        if (onnx_path.parent / extra).is_file():
            shutil.copy(onnx_path.parent / extra, out_dir / extra)
    path = out_dir / "model.onnx"
    summary = smooth(onnx_path, path, calibration_feeds(tokenizer, texts), config.smooth_pattern)
    summary["calibration_rows"] = len(texts)
    return (onnx_path if "skipped" in summary else path), summary


def calibration_feeds(
    tokenizer, texts: Sequence[str], batch_size: int = 32
) -> list[dict[str, np.ndarray]]:
    """Length-sorted, padded batches of `texts` as ONNX inputs (how export and the service run)."""
    from serving.inference import ENCODING_FIELDS, pad_batch, pad_id, plan_sub_batches

    encodings = tokenizer.encode_batch(list(texts))
    chunks = plan_sub_batches([len(e.ids) for e in encodings], batch_size, max_tokens=None)
    pad = pad_id(tokenizer)
    feeds = [
        pad_batch([encodings[i] for i in chunk], list(ENCODING_FIELDS), pad) for chunk in chunks
    ]
    return feeds
