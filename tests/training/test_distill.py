"""Distillation (training/distill.py): the loss on a hand-made example, the teacher-logits file
and its split checks, `auto`, and a tiny student trained on a tiny teacher's logits end to end."""

from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import pytest

from tests.tiny import tiny_dataset, write_jsonl
from training import TrainConfig
from training.data import load_dataset
from training.distill import (
    FORMAT,
    IGNORE_INDEX,
    TeacherLogits,
    TeacherLogitsError,
    distillation_loss,
    resolve_teacher,
    texts_sha256,
)

# --- the loss ------------------------------------------------------------------------------


def test_loss_on_a_hand_made_example():
    """Student logits (2, 0), teacher (0, 2), true label 0, T = 2, alpha = 0.5.

    At T = 2 the student's distribution is (s, 1 - s) with s = e / (1 + e), the teacher's the
    mirror image, so KL(teacher || student) = (2s - 1) ln(s / (1 - s)) = (e - 1) / (e + 1).
    CE = ln(1 + e^-2). Loss = 0.5 CE + 0.5 * 2^2 * KL.
    """
    import torch

    student = torch.tensor([[2.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    labels = torch.tensor([0])
    ce = math.log(1 + math.exp(-2))
    kl = (math.e - 1) / (math.e + 1)
    loss = distillation_loss(student, labels, teacher, temperature=2.0, alpha=0.5)
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * 4 * kl, rel=1e-6)
    # alpha 0 or no teacher: plain cross-entropy; alpha 1: the soft term alone
    assert distillation_loss(student, labels, teacher, 2.0, 0.0).item() == pytest.approx(ce)
    assert distillation_loss(student, labels, None, 2.0, 0.5).item() == pytest.approx(ce)
    assert distillation_loss(student, labels, teacher, 2.0, 1.0).item() == pytest.approx(4 * kl)
    # a teacher that agrees with the student adds nothing
    same = distillation_loss(student, labels, student.clone(), 3.0, 0.25).item()
    assert same == pytest.approx(0.75 * ce, rel=1e-6)


def test_trainer_feeds_each_rows_teacher_logits_to_the_loss(tiny_model_dir, tmp_path):
    """The collator carries `teacher_logits` through the Trainer's data loader and the
    distillation trainer's loss is `distillation_loss` of those rows (not the plain CE)."""
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        TrainingArguments,
    )

    from training.distill import TeacherCollator, distillation_trainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    texts = ["A great film.", "A dull plot.", "Quite brilliant.", "Really bland and tedious."]
    rows = dict(tokenizer(texts, truncation=True, max_length=16))
    teacher = [[3.0, -1.0], [-2.0, 2.0], [0.5, 0.0], [1.0, 4.0]]
    ds = datasets.Dataset.from_dict({**rows, "labels": [1, 0, 1, 0], "teacher_logits": teacher})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        remove_unused_columns=False,
        report_to=[],
        use_cpu=True,
    )
    trainer = distillation_trainer(2.0, 0.5)(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=TeacherCollator(DataCollatorWithPadding(tokenizer)),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["teacher_logits"].shape == (4, 2)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}
        logits = model(**inputs).logits
    # each row keeps its own teacher logits (the sampler may shuffle rows, not columns)
    teacher_of = {tuple(ids): t for ids, t in zip(rows["input_ids"], teacher, strict=True)}
    for ids, mask, t in zip(
        batch["input_ids"], batch["attention_mask"], batch["teacher_logits"], strict=True
    ):
        assert teacher_of[tuple(ids[mask.bool()].tolist())] == t.tolist()
    expected = distillation_loss(logits, batch["labels"], batch["teacher_logits"], 2.0, 0.5)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    plain = torch.nn.functional.cross_entropy(logits, batch["labels"])
    assert abs(loss.item() - plain.item()) > 1e-3


def test_unlabelled_rows_count_in_the_soft_term_only():
    import torch

    student = torch.tensor([[2.0, 0.0], [0.5, -0.5]])
    teacher = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, IGNORE_INDEX])
    loss = distillation_loss(student, labels, teacher, 1.0, 0.5)
    ce = math.log(1 + math.exp(-2))  # the labelled row's
    p = torch.softmax(student, -1)
    q = torch.softmax(teacher, -1)
    kl = float((q * (q.log() - p.log())).sum(-1).mean())  # both rows, batch mean
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * kl, rel=1e-6)
    only_soft = distillation_loss(student, torch.full((2,), IGNORE_INDEX), teacher, 1.0, 0.5)
    assert only_soft.item() == pytest.approx(0.5 * kl, rel=1e-6)


# --- the file ------------------------------------------------------------------------------


def _data(tmp_path, **cfg):
    path = tmp_path / "reviews.jsonl"
    if not path.exists():
        write_jsonl(path, tiny_dataset(80, seed=5))
    config = TrainConfig(dataset=str(path), **cfg)
    return config, load_dataset(config)


def _fake_teacher(data) -> TeacherLogits:
    """Teacher logits for `data` (the true labels, confidently), with the metadata a real file
    carries."""
    logits = {}
    for split, frame in data.splits.items():
        onehot = np.eye(len(data.labels), dtype=np.float32)[frame["label"].to_numpy()]
        logits[split] = 4 * onehot - 2 + np.float32(0.123)  # not exact in float16
    meta = {
        "format": FORMAT,
        "labels": data.labels,
        "data_fingerprint": data.fingerprint,
        "texts_sha256": {s: texts_sha256(f["text"]) for s, f in data.splits.items()},
        "rows": {s: len(f) for s, f in data.splits.items()},
        "teacher": {"run_id": "fake", "base_model": "tests", "scores": {}},
        "command": "by hand",
    }
    return TeacherLogits(logits, meta)


def test_file_round_trips_and_checks_the_split(tmp_path):
    _, data = _data(tmp_path)
    teacher = _fake_teacher(data)
    path = teacher.save(tmp_path / "t" / "teacher.npz")
    loaded = TeacherLogits.load(path)
    assert loaded.meta == teacher.meta
    for split in ("train", "validation", "test"):
        np.testing.assert_allclose(loaded.logits[split], teacher.logits[split], atol=2e-3)
        assert loaded.logits[split].dtype == np.float32
    loaded.check(data.splits, data.labels, data.fingerprint)  # the same split: accepted

    _, other = _data(tmp_path, split_seed=7)  # same rows, another split
    with pytest.raises(TeacherLogitsError, match="another data split"):
        loaded.check(other.splits, other.labels, other.fingerprint)
    with pytest.raises(TeacherLogitsError, match="labels"):
        loaded.check(data.splits, ["bad", "good"], data.fingerprint)
    shuffled = {**data.splits, "train": data.splits["train"].iloc[::-1]}
    with pytest.raises(TeacherLogitsError, match="training texts differ"):
        loaded.check(shuffled, data.labels, data.fingerprint)


def test_a_broken_file_is_named(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(TeacherLogitsError, match="x.npz is not a teacher logits file"):
        TeacherLogits.load(tmp_path / "x.npz")
    with pytest.raises(TeacherLogitsError, match="does not exist"):
        TeacherLogits.load(tmp_path / "missing.npz")


def test_auto_uses_a_fitting_file_and_otherwise_trains_plainly(tmp_path, monkeypatch, caplog):
    from training import distill

    cfg, data = _data(tmp_path)
    committed = tmp_path / "teachers" / "tiny.npz"
    monkeypatch.setattr(distill, "AUTO_FILES", {cfg.dataset: committed})
    caplog.set_level(logging.WARNING)

    teacher, record = resolve_teacher(cfg, data)  # not generated yet
    assert teacher is None and record["used"] is False
    assert "does not exist" in record["reason"] and "training without a teacher" in caplog.text

    fake = _fake_teacher(data)
    fake.save(committed)
    teacher, record = resolve_teacher(cfg, data)
    assert record["used"] is True and set(teacher.logits) == set(fake.logits)
    for split, logits in fake.logits.items():  # the committed file's logits (float16 on disk)
        np.testing.assert_allclose(teacher.logits[split], logits, atol=1e-2)
    assert record["teacher_logits"] == str(committed)
    assert record["file_sha256"] == hashlib.sha256(committed.read_bytes()).hexdigest()
    assert (record["temperature"], record["alpha"]) == (2.0, 0.5)

    teacher_cfg = TrainConfig(dataset=cfg.dataset, model="tests")  # the teacher's own base model
    teacher, record = resolve_teacher(teacher_cfg, data)
    assert teacher is None and "not distilled into itself" in record["reason"]

    other_cfg, other = _data(tmp_path, split_seed=3)  # a run on another split
    teacher, record = resolve_teacher(other_cfg, other)
    assert teacher is None and "another data split" in record["reason"]
    # named explicitly, the same file is an error, not a silent fallback
    explicit = TrainConfig(dataset=cfg.dataset, split_seed=3, teacher_logits=str(committed))
    with pytest.raises(TeacherLogitsError, match="another data split"):
        resolve_teacher(explicit, other)
    assert resolve_teacher(TrainConfig(teacher_logits="none").resolved(), data)[0] is None


def test_distillation_options_are_checked():
    with pytest.raises(ValueError, match="distill_alpha"):
        TrainConfig(distill_alpha=1.5).resolved()
    with pytest.raises(ValueError, match="distill_temperature"):
        TrainConfig(distill_temperature=0).resolved()


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_student_trains_on_a_tiny_teachers_logits(tmp_path, capsys):
    """Teacher: a tiny MPNet fine-tuned by `run_training`; its logits written by the CLI; student:
    a tiny BERT trained on them (another architecture, the same split)."""
    from tests.tiny import build_tiny_model
    from training import run_training
    from training.__main__ import main as train_main
    from training.distill import main as distill_main

    data = write_jsonl(tmp_path / "reviews.jsonl", tiny_dataset(120, seed=3))
    common = {
        "dataset": str(data),
        "max_length": 32,
        "num_threads": 1,
        "batch_size": 8,
        "warmup_ratio": 0.0,
        "early_stopping_patience": 20,
        "output_dir": str(tmp_path / "runs"),
    }
    teacher_run = run_training(
        TrainConfig(
            model=str(build_tiny_model(tmp_path / "mpnet", arch="mpnet")),
            epochs=8,
            learning_rate=2e-3,
            run_name="teacher",
            teacher_logits=None,
            **common,
        )
    )
    out = tmp_path / "teacher.npz"
    capsys.readouterr()  # the Trainer prints its logs
    assert (
        distill_main(["logits", str(teacher_run), "--out", str(out), "--augment-copies", "1"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_id"] == teacher_run.name and printed["bytes"] < 10_000
    teacher = TeacherLogits.load(out)
    info = json.loads((teacher_run / "run_info.json").read_text())
    metrics = json.loads((teacher_run / "metrics.json").read_text())
    assert teacher.meta["data_fingerprint"] == info["data_fingerprint"]
    assert teacher.meta["rows"] == {"train": 96, "validation": 12, "test": 12, "augmented": 96}
    assert teacher.meta["augmentation"]["copies"] == 1
    assert teacher.meta["command"].startswith("python -m training.distill logits ")
    # the teacher's scores, recomputed from its logits, are those its run measured
    for split in ("validation", "test"):
        recomputed = teacher.meta["teacher"]["scores"][split]["accuracy"]
        assert recomputed == pytest.approx(metrics[split]["accuracy"])

    # a teacher run dir instead of a file: scored on the fly, the same logits
    on_the_fly_cfg = TrainConfig(dataset=str(data), teacher_logits=str(teacher_run))
    on_the_fly, record = resolve_teacher(on_the_fly_cfg, load_dataset(on_the_fly_cfg))
    assert record["used"] and record["teacher_logits"] == str(teacher_run)
    np.testing.assert_allclose(on_the_fly.logits["train"], teacher.logits["train"], atol=1e-2)
    assert on_the_fly.augmented(["x"]) is None  # scored on the fly: no transfer texts

    student_model = build_tiny_model(tmp_path / "bert")
    (tmp_path / "student.yaml").write_text("early_stopping_patience: 20\n")
    student_args = [
        "--config",
        str(tmp_path / "student.yaml"),
        "--dataset",
        str(data),
        "--model",
        str(student_model),
        "--max-length",
        "32",
        "--epochs",
        "8",
        "--batch-size",
        "8",
        "--learning-rate",
        "2e-3",
        "--warmup-ratio",
        "0",
        "--num-threads",
        "1",
        "--output-dir",
        str(tmp_path / "runs"),
        "--teacher-logits",
        str(out),
        "--distill-temperature",
        "3",
        "--distill-alpha",
        "0.7",
    ]
    assert train_main([*student_args, "--run-name", "student"]) == 0
    student_run = tmp_path / "runs" / "latest"
    info = json.loads((student_run / "run_info.json").read_text())
    record = info["distillation"]
    assert record["used"] is True and record["teacher"]["run_id"] == teacher_run.name
    assert (record["temperature"], record["alpha"]) == (3.0, 0.7)
    assert record["augmentation"]["copies"] == 1  # the 96 augmented rows were in its training
    student_metrics = json.loads((student_run / "metrics.json").read_text())
    assert student_metrics["test"]["accuracy"] >= 0.75  # chance is 0.5

    # the same file on another split is refused before anything is written
    runs_before = sorted((tmp_path / "runs").iterdir())
    assert train_main([*student_args, "--split-seed", "7"]) == 2
    assert "another data split" in capsys.readouterr().err
    assert sorted((tmp_path / "runs").iterdir()) == runs_before


def test_augmented_transfer_texts_are_reproducible_and_checked(tmp_path):
    from training.distill import augment_texts

    texts = ["a truly moving and beautifully acted film", "dull", "the plot goes nowhere at all"]
    once = augment_texts(texts, copies=2, seed=3)
    assert once == augment_texts(texts, copies=2, seed=3) != augment_texts(texts, 2, seed=4)
    assert len(once) == 6 and once[1] == once[4] == "dull"  # too short to perturb
    for original, copy in zip(texts * 2, once, strict=True):
        assert set(copy.split()) <= set(original.split())  # words dropped or a span, never new

    _, data = _data(tmp_path)
    teacher = _fake_teacher(data)
    train = data.splits["train"]["text"].tolist()
    extra = augment_texts(train, copies=1, seed=0)
    teacher.logits["augmented"] = np.zeros((len(extra), 2), np.float32)
    teacher.meta["rows"]["augmented"] = len(extra)
    teacher.meta["augmentation"] = {
        "method": "word-dropout-or-span/1",
        "copies": 1,
        "seed": 0,
        "texts_sha256": texts_sha256(extra),
    }
    texts, logits = TeacherLogits.load(teacher.save(tmp_path / "aug.npz")).augmented(train)
    assert texts == extra and logits.shape == (len(extra), 2)
    with pytest.raises(TeacherLogitsError, match="augmented texts differ"):
        teacher.augmented(train[::-1])
