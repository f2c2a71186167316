"""Export proven by parity (ONNX vs PyTorch) and by structure (quantized nodes, sizes)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from common.metrics import classification_metrics
from export import ExportConfig, OnnxClassifier, optimize_onnx, quantize
from export.evaluate import compare
from export.quantize import op_counts


def test_fp32_matches_pytorch(fp32_onnx, tokenizer, eval_rows, torch_probs):
    probs = OnnxClassifier(fp32_onnx, tokenizer).predict_proba([r["text"] for r in eval_rows])
    np.testing.assert_array_equal(probs.argmax(1), torch_probs.argmax(1))
    np.testing.assert_allclose(probs, torch_probs, atol=1e-4)
    # The fixture model learned the task: parity is not between two coin flips.
    labels = np.array([r["label"] for r in eval_rows])
    assert classification_metrics(labels, probs, ["negative", "positive"])["accuracy"] >= 0.9
    assert probs.max(1).mean() > 0.8


def test_fp32_graph_has_dynamic_batch_and_sequence(fp32_onnx):
    graph = onnx.load(str(fp32_onnx)).graph
    assert {i.name for i in graph.input} == {"input_ids", "attention_mask", "token_type_ids"}
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert all(d.dim_param and not d.dim_value for d in dims), tensor.name
    (logits,) = graph.output
    assert logits.name == "logits"
    assert logits.type.tensor_type.shape.dim[1].dim_value == 2


def test_predictions_do_not_depend_on_batching(fp32_onnx, tokenizer, eval_rows):
    texts = [r["text"] for r in eval_rows]
    clf = OnnxClassifier(fp32_onnx, tokenizer)
    batched = clf.predict_proba(texts, batch_size=16)
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in texts[:10]])
    np.testing.assert_allclose(batched[:10], one_by_one, atol=1e-5)


def test_int8_follows_pytorch(int8_onnx, tokenizer, eval_rows, torch_probs):
    path, _ = int8_onnx
    probs = OnnxClassifier(path, tokenizer).predict_proba([r["text"] for r in eval_rows])
    stats = compare(torch_probs, probs)
    assert stats["agreement"] >= 0.975
    assert stats["mean_prob_diff"] < 0.02
    assert stats["max_prob_diff"] < 0.15


def test_int8_graph_is_quantized(fp32_onnx, int8_onnx):
    path, settings = int8_onnx
    counts = op_counts(path)
    weights = {i.name for i in onnx.load(str(fp32_onnx)).graph.initializer}
    weight_matmuls = sum(
        1
        for n in onnx.load(str(fp32_onnx)).graph.node
        if n.op_type == "MatMul" and n.input[1] in weights
    )
    assert weight_matmuls == 12  # 2 layers x (q, k, v, out, intermediate, output)
    # Every encoder MatMul became an integer MatMul fed by a dynamically quantized activation;
    # the head stays FP32 (ORT rewrites each Gemm as MatMul + Add; the excluded ones stay float).
    assert counts["MatMulInteger"] == weight_matmuls + 4  # + Q x K^T and probs x V, per layer
    assert counts["DynamicQuantizeLinear"] >= weight_matmuls
    assert _float_matmuls(path) == ["/bert/pooler/dense/Gemm_MatMul", "/classifier/Gemm_MatMul"]
    assert set(settings["nodes_to_exclude"]) >= set(_float_matmuls(path))
    assert settings["per_channel"] is True
    assert settings["operators_to_quantize"] == ["MatMul", "Gather"]


def test_weight_matmuls_only_leaves_attention_matmuls_fp32(fp32_onnx, tmp_path):
    path, _ = quantize(fp32_onnx, tmp_path, ExportConfig(weight_matmuls_only=True))
    assert op_counts(path)["MatMulInteger"] == 12
    attention = [
        f"/bert/encoder/layer.{i}/attention/self/MatMul{s}" for i in (0, 1) for s in ("", "_1")
    ]
    head = ["/bert/pooler/dense/Gemm_MatMul", "/classifier/Gemm_MatMul"]
    assert _float_matmuls(path) == sorted(head + attention)


def _float_matmuls(path) -> list[str]:
    graph = onnx.load(str(path)).graph
    return sorted(n.name for n in graph.node if n.op_type in ("MatMul", "Gemm"))


def test_int8_embeddings_are_8_bit_and_file_is_small(fp32_onnx, int8_onnx):
    path, _ = int8_onnx
    int8_types = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    inits = {i.name: i for i in onnx.load(str(path)).graph.initializer}
    assert "bert.embeddings.word_embeddings.weight" not in inits  # no FP32 copy left
    assert inits["bert.embeddings.word_embeddings.weight_quantized"].data_type in int8_types
    # The weights shrink ~4x. (The tiny graph's file is mostly node overhead; a real MiniLM file
    # lands near a quarter of FP32, docs/results.md.)
    assert path.stat().st_size < fp32_onnx.stat().st_size
    assert _weight_bytes(path) < 0.35 * _weight_bytes(fp32_onnx)


def _weight_bytes(path) -> int:
    return sum(onnx.numpy_helper.to_array(i).nbytes for i in onnx.load(str(path)).graph.initializer)


def test_per_tensor_and_operator_choice_change_the_graph(fp32_onnx, tmp_path):
    config = ExportConfig(per_channel=False, operators_to_quantize=["MatMul"])
    path, settings = quantize(fp32_onnx, tmp_path, config)
    assert settings["per_channel"] is False
    inits = {i.name: i for i in onnx.load(str(path)).graph.initializer}
    word = inits["bert.embeddings.word_embeddings.weight"]
    assert word.data_type == onnx.TensorProto.FLOAT  # Gather left FP32
    assert op_counts(path)["MatMulInteger"] == op_counts(fp32_onnx)["MatMul"]
    # Without keep_head_fp32 ORT turns the head's Gemms into quantized MatMuls too.
    config = ExportConfig(keep_head_fp32=False, operators_to_quantize=["MatMul"])
    path, settings = quantize(fp32_onnx, tmp_path / "head", config)
    assert settings["nodes_to_exclude"] == []
    assert op_counts(path)["Gemm"] == 0
    assert op_counts(path)["MatMulInteger"] == op_counts(fp32_onnx)["MatMul"] + 2


@pytest.mark.slow
def test_optimized_graph_quantizes_and_keeps_parity(
    fp32_onnx, tokenizer, eval_rows, torch_probs, tmp_path
):
    optimized = optimize_onnx(fp32_onnx, tmp_path / "opt", "O2")
    fused = op_counts(optimized)
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] >= 2
    texts = [r["text"] for r in eval_rows]
    np.testing.assert_allclose(
        OnnxClassifier(optimized, tokenizer).predict_proba(texts), torch_probs, atol=1e-4
    )
    int8, _ = quantize(optimized, tmp_path / "int8", ExportConfig())
    probs = OnnxClassifier(int8, tokenizer).predict_proba(texts)
    assert compare(torch_probs, probs)["agreement"] >= 0.975
