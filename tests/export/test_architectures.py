"""Any HF encoder exports end to end: ONNX, smoothing found from the graph, INT8, the gate, the
store, and the serving leaf answering from the stored files (tiny BERT, DistilBERT, RoBERTa, MPNet).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import ARCHITECTURES, make_tiny_run

pytestmark = pytest.mark.slow

INPUTS = {
    "bert": ["input_ids", "attention_mask", "token_type_ids"],
    "distilbert": ["input_ids", "attention_mask"],
    "roberta": ["input_ids", "attention_mask"],
    "mpnet": ["input_ids", "attention_mask"],
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_export_and_serve(arch, tmp_path):
    import bentoml

    from export import ExportConfig, export_run
    from serving.inference import Classifier

    run_dir = make_tiny_run(tmp_path / f"tiny-{arch}", arch)
    tag = export_run(run_dir, ExportConfig(optimize="off", calibration_rows=64))
    model = bentoml.models.get(tag)
    meta = model.info.metadata
    smoothing = meta["quantization"]["smoothing"]
    # 2 layers x (q, k, v, attention out, FFN in, FFN out), found without any name pattern
    assert "skipped" not in smoothing and len(smoothing["matmuls"]) == 12
    assert not any("classifier" in name for name in smoothing["matmuls"])
    assert meta["gate"]["passed"] and meta["agreement"]["test"]["agreement"] >= 0.95
    assert meta["metrics"]["model"]["test"]["accuracy"] >= 0.9

    clf = Classifier.from_dir(Path(model.path))
    assert clf.input_names == INPUTS[arch]
    answers = clf.predict(["A wonderful, superb film.", "An awful and boring film."])
    assert [a["label"] for a in answers] == ["positive", "negative"]
