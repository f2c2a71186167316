"""Activation smoothing (export/smooth.py): exact in FP32, less INT8 error, quantizes as usual."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from export import ExportConfig, OnnxClassifier, quantize
from export.evaluate import compare
from export.quantize import op_counts
from export.smooth import (
    SMOOTH_SUFFIX,
    calibration_feeds,
    calibration_texts,
    quantization_error,
    search_scale,
    smooth,
    smooth_graph,
    smoothable_matmuls,
    weight_matmuls,
)


def _outlier_batches(seed=0):
    """Activations with one channel 30x larger than the rest, as in a fine-tuned BERT."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(3):
        x = rng.normal(size=(64, 32)).astype(np.float32)
        x[:, 5] *= 30
        batches.append(x)
    w = rng.normal(scale=0.05, size=(32, 16)).astype(np.float32)
    return batches, w


def test_search_finds_a_scale_that_cuts_the_int8_error():
    batches, w = _outlier_batches()
    alpha, scale, rel_err = search_scale(batches, [w], (0.3, 0.5, 0.8))
    assert alpha in (0.3, 0.5, 0.8)
    assert rel_err < 0.5
    assert scale[5] == scale.max()  # the outlier channel is divided the most
    assert quantization_error(batches, [w], scale) < quantization_error(batches, [w], None)


def test_smooth_declines_groups_it_cannot_improve(fp32_onnx, run, tokenizer, tmp_path):
    feeds = calibration_feeds(tokenizer, calibration_texts(run.rows("train"), 16))
    # min_gain 0: no group can reach zero error, so nothing is smoothed and the graph is unchanged.
    summary = smooth(fp32_onnx, tmp_path / "model.onnx", feeds, min_gain=0.0)
    assert all(s["alpha"] is None for s in summary["matmuls"].values())
    assert op_counts(tmp_path / "model.onnx") == op_counts(fp32_onnx)


def test_calibration_texts_are_a_fixed_random_sample(eval_rows):
    a = calibration_texts(eval_rows, 10)
    assert a == calibration_texts(eval_rows, 10)
    assert len(set(a)) == 10 and set(a) <= {r["text"] for r in eval_rows}
    assert len(calibration_texts(eval_rows, 10_000)) == len(eval_rows)


@pytest.fixture(scope="module")
def smoothed(fp32_onnx, run, tokenizer, tmp_path_factory):
    """(path, summary) of the tiny FP32 graph smoothed with every group forced on."""
    texts = calibration_texts(run.rows("train"), 64)
    path = tmp_path_factory.mktemp("smoothed") / "model.onnx"
    shutil.copy(fp32_onnx.parent / "config.json", path.parent)  # Optimum's tools look for it
    summary = smooth(fp32_onnx, path, calibration_feeds(tokenizer, texts), min_gain=np.inf)
    return path, summary


def test_smoothing_keeps_the_fp32_model_exact(fp32_onnx, smoothed, tokenizer, eval_rows):
    texts = [r["text"] for r in eval_rows]
    ref = OnnxClassifier(fp32_onnx, tokenizer).predict_proba(texts)
    np.testing.assert_allclose(
        OnnxClassifier(smoothed[0], tokenizer).predict_proba(texts), ref, atol=1e-5
    )


def test_smoothed_matmuls_read_their_mul_and_stay_quantized(smoothed, tmp_path):
    path, summary = smoothed
    applied = {n for n, s in summary["matmuls"].items() if s["alpha"] is not None}
    # 2 layers x (q/k/v share one input, attention out, FFN in, FFN out); the head never matches.
    assert len(summary["matmuls"]) == 12
    assert applied == set(summary["matmuls"])
    assert not any("pooler" in n or "classifier" in n for n in summary["matmuls"])
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.name in applied:
            mul = producer[node.input[0]]
            assert mul.op_type == "Mul" and mul.name.endswith(SMOOTH_SUFFIX)
    smooth_muls = [n for n in graph.node if n.name.endswith(SMOOTH_SUFFIX)]
    assert len(smooth_muls) == 8  # one per distinct input: 2 layers x 4

    int8, _ = quantize(path, tmp_path, ExportConfig())
    counts = op_counts(int8)
    assert counts["MatMulInteger"] == 12 + 4  # all weight MatMuls + Q x K^T and probs x V
    qgraph = onnx.load(str(int8)).graph
    float_matmuls = sorted(n.name for n in qgraph.node if n.op_type in ("MatMul", "Gemm"))
    assert float_matmuls == ["/bert/pooler/dense/Gemm_MatMul", "/classifier/Gemm_MatMul"]
    assert sum(n.name.endswith(SMOOTH_SUFFIX) for n in qgraph.node) == 8  # Muls stay float


def test_smoothing_lowers_the_int8_error(
    fp32_onnx, smoothed, int8_onnx, tokenizer, eval_rows, tmp_path
):
    texts = [r["text"] for r in eval_rows]
    ref = OnnxClassifier(fp32_onnx, tokenizer).predict_proba(texts)
    plain = OnnxClassifier(int8_onnx[0], tokenizer).predict_proba(texts)
    int8, _ = quantize(smoothed[0], tmp_path, ExportConfig())
    smooth_probs = OnnxClassifier(int8, tokenizer).predict_proba(texts)
    assert compare(ref, smooth_probs)["agreement"] >= 0.975
    assert (
        compare(ref, smooth_probs)["mean_prob_diff"] <= 1.5 * compare(ref, plain)["mean_prob_diff"]
    )


def test_smooth_graph_follows_the_config(fp32_onnx, run, tokenizer, tmp_path, caplog):
    config = ExportConfig(
        smooth_pattern=r"/encoder/layer\.1/output/dense/MatMul$", calibration_rows=16
    )
    texts = calibration_texts(run.rows("train"), config.calibration_rows)
    path, summary = smooth_graph(fp32_onnx, tmp_path, tokenizer, texts, config)
    assert path == tmp_path / "model.onnx" and (tmp_path / "config.json").is_file()
    assert list(summary["matmuls"]) == ["/bert/encoder/layer.1/output/dense/MatMul"]
    assert summary["calibration_rows"] == 16
    # a pattern that matches nothing: the graph goes on unsmoothed, and the reason is kept
    path, summary = smooth_graph(
        fp32_onnx, tmp_path / "x", tokenizer, texts, ExportConfig(smooth_pattern="nope")
    )
    assert path == fp32_onnx and not (tmp_path / "x" / "model.onnx").exists()
    assert summary["skipped"] == "no weight MatMul matches the smoothing pattern 'nope'"
    assert "smoothing skipped: no weight MatMul matches" in caplog.text


def test_weight_matmuls_are_found_in_the_graph(fp32_onnx):
    """Without a pattern, the encoder's weight MatMuls come from the graph's structure: the same
    12 that BERT's node names give, and neither attention's activation MatMuls nor the head."""
    model = onnx.load(str(fp32_onnx))
    found = sorted(n.name for n in weight_matmuls(model))
    by_name = smoothable_matmuls(model, r"/encoder/layer\.\d+/.*/(query|key|value|dense)/MatMul$")
    assert found == sorted(n.name for nodes in by_name.values() for n in nodes)
    assert len(found) == 12
    assert len(smoothable_matmuls(model)) == 8  # q/k/v share their input


@pytest.mark.slow
def test_smoothed_graph_optimizes_and_quantizes(
    smoothed, fp32_onnx, tokenizer, eval_rows, tmp_path
):
    from export import optimize_onnx

    texts = [r["text"] for r in eval_rows]
    ref = OnnxClassifier(fp32_onnx, tokenizer).predict_proba(texts)
    optimized = optimize_onnx(smoothed[0], tmp_path / "opt", "O2")
    np.testing.assert_allclose(
        OnnxClassifier(optimized, tokenizer).predict_proba(texts), ref, atol=1e-4
    )
    int8, _ = quantize(optimized, tmp_path / "int8", ExportConfig())
    probs = OnnxClassifier(int8, tokenizer).predict_proba(texts)
    assert compare(ref, probs)["agreement"] >= 0.975
