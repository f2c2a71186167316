"""End-to-end training of a tiny BERT on a few dozen rows: a complete run directory."""

from __future__ import annotations

import json

import pytest

from tests.tiny import tiny_dataset, write_jsonl
from training import TrainConfig, run_training
from training.__main__ import main
from training.train import precision_flags

pytestmark = pytest.mark.slow
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("train")
    data = write_jsonl(tmp / "reviews.jsonl", tiny_dataset(120, seed=3))
    cfg = TrainConfig(
        dataset=str(data),
        model=str(tiny_model_dir),
        max_length=32,
        epochs=6,
        num_threads=1,
        batch_size=8,
        learning_rate=2e-3,
        warmup_ratio=0.0,
        early_stopping_patience=20,
        evals_per_epoch=2,
        checkpoint_soup=True,
        output_dir=str(tmp / "runs"),
        run_name="tiny",
    )
    return run_training(cfg)


def test_run_directory_is_complete(trained_run):
    run = trained_run
    for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]:
        assert (run / "model" / name).is_file(), name
    rows = {s: (run / "data" / f"{s}.jsonl").read_text().splitlines() for s in SPLITS}
    counts = {s: len(lines) for s, lines in rows.items()}
    assert counts == {"train": 96, "validation": 12, "test": 12}
    texts = [json.loads(line)["text"] for lines in rows.values() for line in lines]
    assert len(set(texts)) == 120  # every row in exactly one split
    assert (run / "config.yaml").is_file()
    for png in ["curves.png", "confusion_test.png"]:
        assert (run / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert not (run / "checkpoints").exists()
    latest = run.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == run.resolve()


def test_metrics_and_run_info(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    info = json.loads((trained_run / "run_info.json").read_text())
    for split in ("validation", "test"):
        m = metrics[split]
        assert set(m) >= {"accuracy", "macro_f1", "roc_auc", "confusion_matrix"}
        assert sum(map(sum, m["confusion_matrix"])) == m["support"] == 12
    # the sentiment cue is a single word: the tiny model must have learned it (chance is 0.5)
    assert metrics["test"]["accuracy"] >= 0.75
    assert info["labels"] == ["negative", "positive"]
    soup = metrics["checkpoint_soup"]  # the half-epoch checkpoints, greedily averaged
    assert soup["ingredients"][0].startswith("checkpoint-")
    assert len(soup["tried"]) == 11  # 6 epochs x 2: the best one, then every other one tried
    assert soup["validation_score"] >= soup["best_single_validation_score"]
    assert metrics["validation"]["macro_f1"] == pytest.approx(soup["validation_score"], abs=1e-6)
    assert info["max_length"] == 32 and len(info["data_fingerprint"]) == 64
    config = json.loads((trained_run / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_saved_model_reloads_and_predicts(trained_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(trained_run / "model").eval()
    tok = AutoTokenizer.from_pretrained(trained_run / "model")
    batch = tok(
        ["A wonderful superb film.", "An awful boring film."], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        preds = model(**batch).logits.argmax(-1).tolist()
    assert [model.config.id2label[p] for p in preds] == ["positive", "negative"]


def test_cli_reports_bad_data_with_exit_code_2(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", tiny_dataset(20))
    code = main(
        ["--dataset", str(path), "--text-column", "review", "--output-dir", str(tmp_path / "runs")]
    )
    assert code == 2
    assert "missing column(s) ['review']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_precision_on_cpu_is_fp32():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU-only check")
    assert precision_flags("auto") == {"fp16": False, "bf16": False}
    with pytest.raises(ValueError, match="precision"):
        precision_flags("fp8")
