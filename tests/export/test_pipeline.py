"""The whole stage: store contract, load-back parity, accuracy gate, run-dir errors, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from export import (
    STORED_FILES,
    AccuracyGateError,
    ExportConfig,
    OnnxClassifier,
    RunDirError,
    detect_isa,
    load_run_dir,
    load_tokenizer,
)
from export.__main__ import main
from export.evaluate import compare
from export.pipeline import check_gate
from export.quantize import quantization_config


def _models(name="sentiment-classifier"):
    import bentoml

    return {str(m.tag) for m in bentoml.models.list(name)}


# --- the stored model (shared fixture `tiny_bento_model`, made by export_run) ----------------


def test_store_holds_exactly_the_contract_files(tiny_bento_model):
    import bentoml

    model = bentoml.models.get(tiny_bento_model)
    files = {p.name for p in Path(model.path).iterdir()}
    assert files == {*STORED_FILES, "model.yaml"}  # model.yaml is BentoML's own
    config = json.loads(Path(model.path_of("model_config.json")).read_text())
    assert config == {
        "labels": ["negative", "positive"],
        "max_length": 32,
        "input_names": ["input_ids", "attention_mask", "token_type_ids"],
        "quantized": True,
    }
    assert model.info.labels == {
        "stage": "dev",
        "base_model": model.info.metadata["base_model"],
        "quantized": "true",
    }


def test_store_metadata_describes_the_model(tiny_bento_model, tiny_trained_run_dir):
    import bentoml

    meta = bentoml.models.get(tiny_bento_model).info.metadata
    info = json.loads((tiny_trained_run_dir / "run_info.json").read_text())
    assert meta["base_model"] == info["base_model"]
    assert meta["data_fingerprint"] == info["data_fingerprint"]
    assert meta["run_id"] == "tiny-trained-run"
    for key in ("fp32", "model"):
        for split in ("validation", "test"):
            m = meta["metrics"][key][split]
            assert 0.9 <= m["accuracy"] <= 1 and 0.9 <= m["macro_f1"] <= 1 and m["n"] == 40
    assert meta["agreement"]["test"]["agreement"] >= 0.975
    assert meta["gate"] == {
        "max_accuracy_drop": 0.5,
        "accuracy_drop_points": meta["gate"]["accuracy_drop_points"],
        "passed": True,
        "forced": False,
    }
    assert meta["invariance"]["passed"] is True  # static scales: batch mates change nothing
    assert meta["invariance"]["texts"] == 40 and meta["invariance"]["max_diff"] <= 1e-5
    assert meta["quantization"]["activation_scales"] == "static"
    assert meta["quantization"]["calibration"]["rows"] == 128
    assert meta["quantization"]["per_channel"] is True
    assert meta["quantization"]["isa"] in ("avx512_vnni", "avx512", "avx2", "arm64")
    smoothing = meta["quantization"]["smoothing"]  # on by default, calibrated on train rows
    assert smoothing["calibration_rows"] == 128
    assert len(smoothing["matmuls"]) == 12  # every encoder weight MatMul was considered
    assert meta["export_config"]["smooth"] is True
    assert meta["optimization"]["applied"] is False
    assert meta["quantized_nodes"] == {"MatMulIntegerToFloat": 16, "QuantizeLinear": 16}
    assert meta["size_bytes"]["model"] < meta["size_bytes"]["fp32"]
    assert set(meta["versions"]) >= {"onnxruntime", "optimum", "transformers", "bentoml"}
    assert meta["texts_per_s"]["model"] > 0


def test_stored_model_loads_back_and_matches_pytorch(tiny_bento_model, run, eval_rows, torch_probs):
    """What the service will load: model.onnx + tokenizer.json straight from the store."""
    import bentoml
    from tokenizers import Tokenizer

    model = bentoml.models.get(tiny_bento_model)
    config = json.loads(Path(model.path_of("model_config.json")).read_text())
    tokenizer = Tokenizer.from_file(model.path_of("tokenizer.json"))
    assert tokenizer.truncation["max_length"] == config["max_length"]
    clf = OnnxClassifier(Path(model.path_of("model.onnx")), tokenizer)
    probs = clf.predict_proba([r["text"] for r in eval_rows])
    stats = compare(torch_probs, probs)
    assert stats["agreement"] >= 0.975
    assert stats["mean_prob_diff"] < 0.02
    labels = np.array([r["label"] for r in eval_rows])
    assert np.mean(probs.argmax(1) == labels) >= 0.9


def test_tokenizer_truncates_long_texts(run):
    tokenizer = load_tokenizer(run.model_dir / "tokenizer.json", run.max_length)
    (long, short) = tokenizer.encode_batch(["great " * 500, "dull"])
    assert len(long.ids) == run.max_length  # truncated to the model window
    assert len(short.ids) == 3  # [CLS] dull [SEP]: not padded, the runtime pads sub-batches


# --- the accuracy gate -------------------------------------------------------------------------


def test_gate_passes_within_the_limit():
    gate = check_gate(0.90, 0.896, max_drop=0.5)
    assert gate["passed"] and not gate["forced"]
    assert gate["accuracy_drop_points"] == pytest.approx(0.4)


def test_gate_refuses_a_larger_drop_with_a_clear_message():
    with pytest.raises(AccuracyGateError, match=r"0\.8900 is 1\.00 points below FP32.*limit 0\.5"):
        check_gate(0.90, 0.89, max_drop=0.5)


def test_gate_force_records_the_failure():
    gate = check_gate(0.90, 0.89, max_drop=0.5, force=True)
    assert not gate["passed"] and gate["forced"]
    assert "1.00 points below" in gate["message"]


@pytest.mark.slow
def test_cli_gate_refuses_then_force_stores(tiny_trained_run_dir, capsys):
    """A negative limit fails any model that is not better than FP32: exit 1, nothing stored."""
    before = _models()
    args = [str(tiny_trained_run_dir), "--optimize", "off", "--max-accuracy-drop", "-5", "-q"]
    assert main(args) == 1
    assert "accuracy gate" in capsys.readouterr().err
    assert _models() == before

    assert main([*args, "--force", "--no-quantize"]) == 0
    out = capsys.readouterr().out
    assert "FP32" in out and "texts/s" in out and "stored: sentiment-classifier:" in out
    (new,) = _models() - before
    import bentoml

    model = bentoml.models.get(new)
    assert model.info.metadata["gate"]["forced"] is True
    assert model.info.labels["quantized"] == "false"
    assert json.loads(Path(model.path_of("model_config.json")).read_text())["quantized"] is False


@pytest.mark.slow
def test_cli_dynamic_scales_need_an_explicit_flag(tiny_trained_run_dir, tmp_path, capsys):
    """Dynamic activation scales fail the invariance gate by construction: exit 1, nothing stored,
    unless --allow-batch-dependence says so; the model then records why it was stored."""
    from tests.export.test_static import ODD_TEXT

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_trained_run_dir, run_dir)
    with (run_dir / "data" / "test.jsonl").open("a") as f:  # a batch mate that moves the range
        f.write(json.dumps({"text": ODD_TEXT, "label": 0}) + "\n")
    before = _models()
    args = [
        str(run_dir),
        "--optimize",
        "off",
        "--activation-scales",
        "dynamic",
        "-q",
        "--max-accuracy-drop",
        "100",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "invariance gate" in err and "--allow-batch-dependence" in err
    assert _models() == before

    assert main([*args, "--allow-batch-dependence"]) == 0
    assert "stored: --allow-batch-dependence" in capsys.readouterr().out
    (new,) = _models() - before
    import bentoml

    meta = bentoml.models.get(new).info.metadata
    assert meta["invariance"]["passed"] is False
    assert meta["invariance"]["stored_because"] == "--allow-batch-dependence"
    assert meta["quantization"]["mode"] == "dynamic"


# --- bad run directories -----------------------------------------------------------------------


def _broken(tiny_run_dir: Path, tmp_path: Path, breaker) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run_dir)
    breaker(run_dir)
    return run_dir


def _set_info(**changes):
    def breaker(run_dir: Path) -> None:
        info = json.loads((run_dir / "run_info.json").read_text())
        info.update(changes)
        (run_dir / "run_info.json").write_text(json.dumps(info))

    return breaker


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda d: shutil.rmtree(d / "model"), "no model/ directory"),
        (lambda d: (d / "model" / "model.safetensors").unlink(), "no model weights"),
        (lambda d: (d / "model" / "tokenizer.json").unlink(), "lacks tokenizer.json"),
        (lambda d: shutil.rmtree(d / "data"), "lacks data/validation.jsonl"),
        (lambda d: (d / "data" / "test.jsonl").unlink(), "lacks data/test.jsonl"),
        (lambda d: (d / "run_info.json").unlink(), "run_info.json is missing"),
        (lambda d: (d / "run_info.json").write_text("{oops"), "not valid JSON"),
        (_set_info(labels=["neg"]), "labels must be a list of >= 2"),
        (_set_info(labels=["bad", "good"]), "labels disagree"),
        (_set_info(max_length="long"), "max_length must be an int"),
    ],
)
def test_broken_run_dir_is_named(tiny_run_dir, tmp_path, breaker, message):
    run_dir = _broken(tiny_run_dir, tmp_path, breaker)
    with pytest.raises(RunDirError, match=message):
        load_run_dir(run_dir)


def test_missing_run_info_key(tiny_run_dir, tmp_path):
    def drop_fingerprint(run_dir):
        info = json.loads((run_dir / "run_info.json").read_text())
        del info["data_fingerprint"]
        (run_dir / "run_info.json").write_text(json.dumps(info))

    with pytest.raises(RunDirError, match="lacks data_fingerprint"):
        load_run_dir(_broken(tiny_run_dir, tmp_path, drop_fingerprint))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"text": "ok"}', "expected"),
        ('{"text": "ok", "label": 7}', "label 7 is not a class id"),
        ("[1, 2]", "expected"),
    ],
)
def test_bad_data_rows_are_named(tiny_run_dir, tmp_path, line, message):
    run_dir = _broken(
        tiny_run_dir, tmp_path, lambda d: (d / "data" / "test.jsonl").write_text(line + "\n")
    )
    with pytest.raises(RunDirError, match=f"test.jsonl:1: {message}"):
        load_run_dir(run_dir).rows("test")


def test_cli_missing_run_dir_exits_2(tmp_path, capsys):
    before = _models()
    assert main([str(tmp_path / "nope"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "nope" in err
    assert _models() == before


def test_cli_rejects_bad_options(tiny_run_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tiny_run_dir), "--isa", "sse2"])
    assert exc.value.code == 2
    assert main([str(tiny_run_dir), "--batch-size", "0"]) == 2
    assert "batch_size must be >= 1" in capsys.readouterr().err


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse2 avx2 avx512f avx512_vnni", "avx512_vnni"),
        ("fpu sse2 avx2 avx512f avx512bw", "avx512"),
        ("fpu sse2 avx avx2 fma", "avx2"),
    ],
)
def test_detect_isa_reads_cpu_flags(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert detect_isa(cpuinfo) == expected


def test_detect_isa_on_arm(monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert detect_isa() == "arm64"


def test_quantization_config_follows_the_export_config():
    from onnxruntime.quantization import QuantType

    isa, q = quantization_config(ExportConfig(isa="avx2", per_channel=False, reduce_range=True))
    assert isa == "avx2" and q.weights_dtype == QuantType.QUInt8  # Optimum's avx2 choice
    assert q.per_channel is False and q.reduce_range is True and not q.is_static
    isa, q = quantization_config(ExportConfig(isa="avx512_vnni"))
    assert q.weights_dtype == QuantType.QInt8 and q.per_channel and not q.reduce_range
    assert [str(op) for op in q.operators_to_quantize] == ["MatMul", "Gather"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"isa": "sse2"}, "isa must be one of"),
        ({"optimize": "maybe"}, "optimize must be one of"),
        ({"optimization_level": "O4"}, "O1, O2 or O3"),
        ({"threads": 0}, "threads must be >= 1"),
        ({"operators_to_quantize": []}, "at least one ONNX operator"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExportConfig(**kwargs)
