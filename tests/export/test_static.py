"""Static activation scales (export/static.py) and the batch-invariance gate (export/invariance.py):
the same text gets the same scores alone and inside any batch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from export import ExportConfig, InvarianceGateError, OnnxClassifier
from export.evaluate import compare
from export.invariance import batch_invariance, run_chunks
from export.pipeline import check_invariance
from export.quantize import op_counts
from export.static import TextCalibrationReader, freeze_scales, uint8_params


def test_calibration_reader_gives_one_unpadded_text_per_call(tokenizer):
    texts = ["great", "the movie was really quite dull and the cast was bland"]
    reader = TextCalibrationReader(tokenizer, texts, ["input_ids", "attention_mask"])
    assert len(reader) == 2
    first, second = reader.get_next(), reader.get_next()
    assert reader.get_next() is None
    assert set(first) == {"input_ids", "attention_mask"}
    assert first["input_ids"].shape == (1, 3)  # [CLS] great [SEP]: no padding
    assert second["input_ids"].shape == (1, len(texts[1].split()) + 2)
    assert second["attention_mask"].all()
    assert len(list(reader)) == 2  # iterating starts over
    with pytest.raises(ValueError, match="at least one text"):
        TextCalibrationReader(tokenizer, [], ["input_ids"])


def test_uint8_params_match_dynamic_quantize_linear():
    """The frozen scale is what DynamicQuantizeLinear would compute for a tensor of that range."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = np.array([[-1.7, 0.2, 3.9, 2.5]], np.float32)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("z", TensorProto.UINT8, []),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    _, scale, zero = session.run(None, {"x": x})
    assert uint8_params(float(x.min()), float(x.max())) == (pytest.approx(scale), zero)
    assert uint8_params(0.5, 2.0)[1] == 0  # the range always holds 0


def test_static_graph_has_constant_scales_and_integer_matmuls(fp32_onnx, int8_onnx, static_onnx):
    path, settings = static_onnx
    counts = op_counts(path)
    dynamic = op_counts(int8_onnx[0])
    assert counts["DynamicQuantizeLinear"] == 0
    assert counts["QuantizeLinear"] == dynamic["DynamicQuantizeLinear"]
    # 12 weight MatMuls + Q x K^T and probs x V per layer, fused with their scale (and bias)
    assert counts["MatMulIntegerToFloat"] == 16 and counts["MatMulInteger"] == 0
    model = onnx.load(str(path))
    constants = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            assert node.input[1] in constants and node.input[2] in constants, node.name
        if node.op_type == "MatMulIntegerToFloat":
            assert node.input[2] in constants or node.input[3] in constants, node.name
    head = sorted(n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm"))
    assert head == ["/bert/pooler/dense/Gemm_MatMul", "/classifier/Gemm_MatMul"]
    assert settings["activation_scales"] == "static"
    assert settings["calibration"]["method"] == "percentile"
    assert settings["calibration"]["percentile"] == 99.0
    assert settings["calibration"]["rows"] == 64
    assert settings["calibration"]["tensors"] == counts["QuantizeLinear"]
    assert path.stat().st_size < fp32_onnx.stat().st_size


def test_static_int8_follows_pytorch(static_onnx, tokenizer, eval_rows, torch_probs):
    probs = OnnxClassifier(static_onnx[0], tokenizer).predict_proba([r["text"] for r in eval_rows])
    stats = compare(torch_probs, probs)
    assert stats["agreement"] >= 0.975
    assert stats["mean_prob_diff"] < 0.02


ODD_TEXT = "zzz qqq " * 12  # out of vocabulary: [UNK]s, unlike any calibration text


def _texts(eval_rows) -> list[str]:
    """The test texts plus some of other lengths, up to the model window (32 tokens), and one
    whose activations stretch a per-call range (the trained tiny model is so confident that
    ordinary batch mates move its dynamic INT8 scores by less than 1e-5)."""
    extra = ["great", "dull !", "the plot was " + "really " * 40 + "charming", ODD_TEXT]
    return extra + [r["text"] for r in eval_rows]


@pytest.mark.parametrize("size", [2, 8, 32])
def test_same_text_same_scores_alone_or_in_any_batch(static_onnx, tokenizer, eval_rows, size):
    """Each text alone vs inside shuffled batches of `size` texts of other lengths (so it is
    padded to a longer mate): equal within float noise."""
    runtime = OnnxClassifier(static_onnx[0], tokenizer).runtime
    texts = _texts(eval_rows)
    encodings = runtime.encode(texts)
    alone = run_chunks(runtime, encodings, [np.array([i]) for i in range(len(texts))])
    rng = np.random.default_rng(size)
    for _ in range(3):
        order = rng.permutation(len(texts))
        chunks = [order[i : i + size] for i in range(0, len(texts), size)]
        batched = run_chunks(runtime, encodings, chunks)
        assert np.abs(batched - alone).max() <= 1e-5


def test_invariance_check_passes_static_and_fp32_and_catches_dynamic(
    fp32_onnx, int8_onnx, static_onnx, tokenizer, eval_rows
):
    texts = _texts(eval_rows)
    for path in (fp32_onnx, static_onnx[0]):
        result = batch_invariance(OnnxClassifier(path, tokenizer).runtime, texts)
        assert result["passed"], result
        assert result["texts_over_tolerance"] == 0 and result["label_flips"] == 0
    result = batch_invariance(OnnxClassifier(int8_onnx[0], tokenizer).runtime, texts)
    assert not result["passed"]
    assert result["max_diff"] > 1e-5 and result["texts_over_tolerance"] > 0
    assert set(result["batchings"]) == {
        "file order, 8",
        "shuffled, 32",
        "shuffled, 2",
        "service sub-batches",
    }


FAILED = {
    "passed": False,
    "max_diff": 3e-3,
    "texts_over_tolerance": 9,
    "texts": 50,
    "tolerance": 1e-5,
    "label_flips": 1,
}


def test_gate_refuses_dynamic_scales_unless_allowed():
    dynamic = ExportConfig(activation_scales="dynamic")
    with pytest.raises(
        InvarianceGateError, match=r"batch mates.*dynamic.*--allow-batch-dependence"
    ):
        check_invariance(dict(FAILED), dynamic)
    with pytest.raises(InvarianceGateError):  # --force is for the accuracy gate
        check_invariance(dict(FAILED), ExportConfig(activation_scales="dynamic", force=True))
    allowed = ExportConfig(activation_scales="dynamic", allow_batch_dependence=True)
    assert check_invariance(dict(FAILED), allowed)["stored_because"] == "--allow-batch-dependence"


def test_gate_refuses_a_batch_dependent_static_graph_unless_forced():
    with pytest.raises(InvarianceGateError, match=r"9 of 50 test texts.*--force stores it"):
        check_invariance(dict(FAILED), ExportConfig())
    assert check_invariance(dict(FAILED), ExportConfig(force=True))["stored_because"] == "--force"
    passed = {**FAILED, "passed": True}
    assert check_invariance(passed, ExportConfig()) == passed


def test_freeze_needs_a_range_for_every_quantized_tensor(int8_onnx, tmp_path):
    with pytest.raises(ValueError, match="no calibrated range"):
        freeze_scales(int8_onnx[0], {}, tmp_path / "model.onnx")


@pytest.mark.slow
def test_static_scales_on_the_optimized_graph(
    fp32_onnx, run, tokenizer, eval_rows, torch_probs, tmp_path
):
    """The O2 graph (fused Attention, left float by the default operators) freezes the same way."""
    from export import optimize_onnx
    from export.smooth import calibration_texts
    from export.static import static_quantize

    optimized = optimize_onnx(fp32_onnx, tmp_path / "opt", "O2")
    texts = calibration_texts(run.rows("train"), 64)
    path, _ = static_quantize(optimized, tmp_path / "int8", ExportConfig(), tokenizer, texts)
    counts = op_counts(path)
    assert counts["Attention"] == 2 and counts["DynamicQuantizeLinear"] == 0
    assert counts["QuantizeLinear"] > 0 and counts["MatMulIntegerToFloat"] > 0
    runtime = OnnxClassifier(path, tokenizer).runtime
    result = batch_invariance(runtime, _texts(eval_rows))
    assert result["passed"], result
    probs = runtime.probabilities(runtime.encode([r["text"] for r in eval_rows]))
    assert compare(torch_probs, probs)["agreement"] >= 0.975
