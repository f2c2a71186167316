"""CLI: `python -m training [--config run.yaml] [--quick] [--model NAME] [--dataset NAME|PATH] ...`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from functools import partial

from common.cli import config_from_args, with_default
from training.bundled import BundleError
from training.config import BUNDLED_TEACHER, REPORT_TO, TrainConfig, load_config
from training.data import DataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = partial(with_default, TrainConfig)  # "text (default: X)", X from TrainConfig
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Fine-tune a transformer for sentiment classification and write a run dir.",
    )
    p.add_argument("--config", help="YAML file of config keys (CLI flags override it)")
    p.add_argument(
        "--quick",
        action="store_true",
        default=None,
        help="demo profile: 2,000 rows, one epoch, max length 64",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        help=d("dataset", "bundled corpus, HF dataset name or .csv/.jsonl/.parquet path"),
    )
    g.add_argument("--dataset-config", help="HF dataset configuration name")
    g.add_argument("--dataset-split", help=d("dataset_split", "HF split(s) to read"))
    g.add_argument("--text-column", help=d("text_column"))
    g.add_argument("--label-column", help=d("label_column"))
    g.add_argument(
        "--label-map",
        type=json.loads,
        help='JSON raw value -> class name, e.g. \'{"1": "positive", "0": "negative"}\'',
    )
    g.add_argument(
        "--label-names",
        type=lambda s: s.split(","),
        help="comma-separated class names by integer id, e.g. negative,positive",
    )
    g.add_argument("--drop-labels", type=lambda s: s.split(","), help="raw label values to drop")
    g.add_argument("--max-samples", type=int, help="stratified subsample before splitting")
    g.add_argument(
        "--split-seed",
        type=int,
        help=d("split_seed", "seed of the train/validation/test split, apart from --seed"),
    )
    m = p.add_argument_group("model and optimisation")
    m.add_argument(
        "--model",
        help=d("model", f"HF model name or path, or {BUNDLED_TEACHER}"),
    )
    m.add_argument("--max-length", type=int, help=d("max_length"))
    m.add_argument(
        "--freeze-layers",
        type=int,
        help=d(
            "freeze_layers", "freeze the embeddings and the lowest N encoder layers (0: all train)"
        ),
    )
    m.add_argument("--epochs", type=float, help=d("epochs"))
    m.add_argument("--batch-size", type=int, help=d("batch_size"))
    m.add_argument("--learning-rate", type=float, help=d("learning_rate"))
    m.add_argument("--warmup-ratio", type=float, help=d("warmup_ratio"))
    m.add_argument("--lr-scheduler", help=d("lr_scheduler"))
    m.add_argument(
        "--checkpoint-soup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=d("checkpoint_soup", "greedy weight average of the epoch checkpoints"),
    )
    m.add_argument(
        "--evals-per-epoch",
        type=int,
        help=d("evals_per_epoch", "validation passes and checkpoints per epoch"),
    )
    m.add_argument("--label-smoothing", type=float, help=d("label_smoothing"))
    m.add_argument("--seed", type=int, help=d("seed"))
    m.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], help=d("precision"))
    m.add_argument("--num-threads", type=int, help="torch CPU threads (default: all cores)")
    k = p.add_argument_group("distillation (python -m training.distill writes teacher logits)")
    k.add_argument(
        "--teacher-logits",
        help=d(
            "teacher_logits",
            "teacher logits file or teacher run dir; auto = the committed file for the bundled "
            "corpus if it fits the split; none = no teacher",
        ),
    )
    k.add_argument(
        "--distill-temperature",
        type=float,
        help=d("distill_temperature", "softmax temperature T"),
    )
    k.add_argument(
        "--distill-alpha",
        type=float,
        help=d("distill_alpha", "weight of the teacher's soft labels vs the true labels"),
    )
    k.add_argument(
        "--distill-augmented",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=d("distill_augmented", "use the teacher file's augmented transfer texts, if any"),
    )
    o = p.add_argument_group("output")
    o.add_argument("--output-dir", help=d("output_dir"))
    o.add_argument("--run-name")
    o.add_argument(
        "--report-to",
        choices=REPORT_TO,
        help=d(
            "report_to",
            "mlflow: record the run in MLflow, in MLFLOW_TRACKING_URI (else sqlite:///mlflow.db "
            "here); export adds to the same run (docs/tracking.md)",
        ),
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        cfg = config_from_args(TrainConfig, args, base=load_config(args.config))
        from training import run_training

        run_dir = run_training(cfg)
    except (DataError, BundleError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
