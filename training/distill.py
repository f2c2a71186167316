"""Knowledge distillation (Hinton et al., 2015): a teacher's soft labels train a smaller student.

1. Fine-tune a teacher like any model (`python -m training --model bundled:all-mpnet-base-v2`).
2. `python -m training.distill logits TEACHER_RUN --out FILE` scores the teacher run's own
   train / validation / test rows and writes a small file (float16 logits + provenance: teacher,
   its validation / test scores recomputed, the data fingerprint, a hash of each split's texts,
   the command).
3. `python -m training --teacher-logits FILE` trains the student on the same split with
   loss = (1 - alpha) CE(labels) + alpha T^2 KL(softmax(teacher / T) || softmax(student / T)).
   The file must fit the student's split: the data fingerprint and the training texts' hash are
   both checked. Evaluation and early stopping stay on validation macro-F1 with the true labels.

The default recipe (`teacher_logits: auto`) uses the file committed for the bundled corpus,
`training/teachers/rotten-tomatoes.npz`, when it fits the run's split, and trains without a
teacher otherwise, logging why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from training.bundled import base_model_name
from training.config import AUTO, BUNDLED_DATASET, TrainConfig

log = logging.getLogger(__name__)

FORMAT = "teacher-logits/1"
SPLITS = ("train", "validation", "test")
TEACHERS_DIR = Path(__file__).resolve().parent / "teachers"
# dataset -> the teacher logits committed for it, used by `teacher_logits: auto`
AUTO_FILES = {BUNDLED_DATASET: TEACHERS_DIR / "rotten-tomatoes.npz"}
IGNORE_INDEX = -100  # label of a row with soft labels only (cross-entropy skips it)
AUGMENT_METHOD = "word-dropout-or-span/1"


def augment_texts(texts, copies: int, seed: int) -> list[str]:
    """`copies` perturbed versions of each text, the same for the same `seed`: a transfer set of
    inputs near the training texts (Tang et al., 2019). A teacher's logits on its own training
    texts say little beyond the labels (it fits them: 97% train accuracy); on nearby texts it
    has not seen, its soft labels carry what it learned. Copy by copy, each text alternately
    loses each word with probability 0.15, or keeps one contiguous span of 50-90% of its words;
    texts of fewer than 4 words are kept whole."""
    rng = random.Random(seed)
    out = []
    for copy in range(copies):
        for i, text in enumerate(texts):
            words = str(text).split()
            if len(words) < 4:
                out.append(str(text))
            elif (i + copy) % 2 == 0:
                kept = [w for w in words if rng.random() >= 0.15] or [rng.choice(words)]
                out.append(" ".join(kept))
            else:
                n = max(2, round(len(words) * rng.uniform(0.5, 0.9)))
                start = rng.randrange(len(words) - n + 1)
                out.append(" ".join(words[start : start + n]))
    return out


class TeacherLogitsError(ValueError):
    """Teacher logits that cannot be used for this run; the message says why."""


def texts_sha256(texts) -> str:
    """sha256 over the texts in order (one JSON string each): a split's identity, labels aside."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(json.dumps(text).encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class TeacherLogits:
    """A teacher's logits for each split of one data split, and where they came from."""

    logits: dict[str, np.ndarray]
    """split -> float32 [rows, classes], rows in the run's `data/<split>.jsonl` order."""
    meta: dict
    """format, labels, data_fingerprint, texts_sha256 {split}, rows {split}, teacher {run_id,
    base_model, run_dir, git_sha, scores {validation, test}}, command, created_at, git_sha."""

    def save(self, path: str | Path) -> Path:
        """Write a compressed .npz: float16 logits per split and the JSON metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"logits_{k}": v.astype(np.float16) for k, v in self.logits.items()}
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(self.meta, sort_keys=True)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TeacherLogits:
        path = Path(path)
        if not path.is_file():
            raise TeacherLogitsError(f"teacher logits file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                logits = {
                    k.removeprefix("logits_"): z[k].astype(np.float32)
                    for k in z.files
                    if k.startswith("logits_")
                }
        except (OSError, ValueError, KeyError) as e:
            raise TeacherLogitsError(f"{path} is not a teacher logits file ({e})") from e
        if meta.get("format") != FORMAT:
            raise TeacherLogitsError(f"{path}: format {meta.get('format')!r}, expected {FORMAT}")
        for split, array in logits.items():
            if array.ndim != 2 or array.shape != (meta["rows"][split], len(meta["labels"])):
                raise TeacherLogitsError(f"{path}: logits_{split} has shape {array.shape}")
        return cls(logits, meta)

    def check(self, splits: dict, labels: list[str], fingerprint: str, source: str = "") -> None:
        """Refuse (TeacherLogitsError) logits made on another split than `splits` (DataFrames
        with `text`): the data fingerprint, the labels and the training texts must all match."""
        where = f"teacher logits {source}".strip()
        if self.meta["labels"] != list(labels):
            raise TeacherLogitsError(
                f"{where} are for labels {self.meta['labels']}, this run has {list(labels)}"
            )
        if self.meta["data_fingerprint"] != fingerprint:
            raise TeacherLogitsError(
                f"{where} were made on another data split: data fingerprint "
                f"{self.meta['data_fingerprint'][:12]}..., this run's is {fingerprint[:12]}... "
                "(same dataset, split_seed, max_samples and sizes needed)"
            )
        train = splits["train"]
        if self.meta["rows"]["train"] != len(train) or self.meta["texts_sha256"][
            "train"
        ] != texts_sha256(train["text"]):
            raise TeacherLogitsError(f"{where}: the training texts differ from this run's")

    def augmented(self, train_texts) -> tuple[list[str], np.ndarray] | None:
        """The augmented transfer texts (regenerated from `train_texts` and checked against the
        file's hash) and their teacher logits, or None if the file has none."""
        aug = self.meta.get("augmentation")
        if not aug or "augmented" not in self.logits:
            return None
        if aug.get("method") != AUGMENT_METHOD:
            raise TeacherLogitsError(f"augmentation {aug.get('method')!r} is not {AUGMENT_METHOD}")
        texts = augment_texts(list(train_texts), aug["copies"], aug["seed"])
        if texts_sha256(texts) != aug["texts_sha256"]:
            raise TeacherLogitsError("the augmented texts differ from the ones the teacher scored")
        return texts, self.logits["augmented"]

    def describe(self) -> dict:
        """What a student run records about its teacher."""
        keys = ("teacher", "augmentation", "command", "created_at", "git_sha")
        return {k: self.meta.get(k) for k in keys}


# --- writing ---------------------------------------------------------------------------------


def predict_logits(model_dir: Path, texts: list[str], max_length: int, batch_size: int = 64):
    """Logits [len(texts), classes] of the HF classifier in `model_dir`, in input order (length-
    sorted batches, so little padding). Uses CUDA when there is one."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device).eval()
    lengths = [
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    ]
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            out[idx] = model(**batch).logits.float().cpu().numpy()
    return out


def teacher_logits_of_run(
    run_dir: str | Path,
    batch_size: int = 64,
    command: str | None = None,
    augment_copies: int = 0,
    augment_seed: int = 0,
) -> TeacherLogits:
    """Score a trained run's own train / validation / test rows with its model, and
    `augment_copies` perturbed copies of its training texts (`augment_texts`, the split
    "augmented"); `command` (the command line that asked for it) goes into the provenance."""
    from common.metrics import classification_metrics, softmax
    from common.provenance import git_sha
    from training.data import fingerprint, load_splits

    run_dir = Path(run_dir)
    info_path = run_dir / "run_info.json"
    if not info_path.is_file() or not (run_dir / "model").is_dir():
        raise TeacherLogitsError(f"{run_dir} is not a training run (run_info.json, model/)")
    info = json.loads(info_path.read_text())
    splits = load_splits(run_dir / "data")
    if fingerprint(splits) != info["data_fingerprint"]:
        raise TeacherLogitsError(f"{run_dir}/data does not match its run_info.json fingerprint")
    logits, scores = {}, {}
    for split in SPLITS:
        texts = splits[split]["text"].tolist()
        log.info("teacher %s: scoring %d %s rows", info["run_id"], len(texts), split)
        logits[split] = predict_logits(run_dir / "model", texts, info["max_length"], batch_size)
        if split != "train":
            m = classification_metrics(
                splits[split]["label"], softmax(logits[split]), info["labels"]
            )
            scores[split] = {k: m[k] for k in ("accuracy", "macro_f1", "roc_auc")}
    augmentation = None
    if augment_copies > 0:
        texts = augment_texts(splits["train"]["text"].tolist(), augment_copies, augment_seed)
        log.info("teacher %s: scoring %d augmented training texts", info["run_id"], len(texts))
        logits["augmented"] = predict_logits(
            run_dir / "model", texts, info["max_length"], batch_size
        )
        augmentation = {
            "method": AUGMENT_METHOD,
            "copies": augment_copies,
            "seed": augment_seed,
            "texts_sha256": texts_sha256(texts),
        }
    meta = {
        "format": FORMAT,
        "labels": info["labels"],
        "data_fingerprint": info["data_fingerprint"],
        "data_source": info.get("data_source"),
        "texts_sha256": {s: texts_sha256(splits[s]["text"]) for s in SPLITS},
        "rows": {s: len(a) for s, a in logits.items()},
        "augmentation": augmentation,
        "teacher": {
            "run_id": info["run_id"],
            "run_dir": str(run_dir),
            "base_model": info["base_model"],
            "max_length": info["max_length"],
            "git_sha": info.get("git_sha"),
            "scores": scores,
        },
        "command": command,
        "git_sha": git_sha(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return TeacherLogits(logits, meta)


# --- reading, for a student run ----------------------------------------------------------------


def resolve_teacher(cfg: TrainConfig, data) -> tuple[TeacherLogits | None, dict]:
    """The teacher logits `cfg.teacher_logits` names, checked against `data` (a training.data
    Dataset), and a record of the decision for run_info.json.

    `auto` falls back to no teacher (logged, recorded) when no file is committed for the dataset
    or the committed one does not fit; an explicit file or run dir that does not fit raises
    TeacherLogitsError.
    """
    choice = cfg.teacher_logits
    if choice is None:
        return None, {"used": False, "reason": "teacher_logits is none"}
    if choice == AUTO:
        path = AUTO_FILES.get(cfg.dataset)
        if path is None:
            reason = f"no teacher logits are committed for dataset {cfg.dataset!r}"
        elif not path.is_file():
            reason = f"{path} does not exist (not generated yet)"
        else:
            teacher = TeacherLogits.load(path)
            try:
                teacher.check(data.splits, data.labels, data.fingerprint, str(path))
                if teacher.meta["teacher"].get("base_model") == base_model_name(cfg.model):
                    raise TeacherLogitsError(
                        f"{path} comes from a {cfg.model} teacher: not distilled into itself"
                    )
            except TeacherLogitsError as e:
                reason = str(e)
            else:
                return teacher, _record(teacher, path, cfg)
        log.warning("training without a teacher (teacher_logits: auto): %s", reason)
        return None, {"used": False, "reason": f"auto: {reason}"}
    path = Path(choice)
    if path.is_dir():
        log.info("scoring the training rows with the teacher run %s", path)
        teacher = teacher_logits_of_run(path)
    else:
        teacher = TeacherLogits.load(path)
    teacher.check(data.splits, data.labels, data.fingerprint, str(path))
    return teacher, _record(teacher, path, cfg)


def _record(teacher: TeacherLogits, path: Path, cfg: TrainConfig) -> dict:
    scores = teacher.meta["teacher"].get("scores", {})
    log.info(
        "distilling from %s (%s; validation accuracy %s) with T=%s, alpha=%s",
        path,
        teacher.meta["teacher"].get("base_model"),
        scores.get("validation", {}).get("accuracy"),
        cfg.distill_temperature,
        cfg.distill_alpha,
    )
    return {
        "used": True,
        "teacher_logits": str(path),
        "file_sha256": file_sha256(path) if path.is_file() else None,
        "temperature": cfg.distill_temperature,
        "alpha": cfg.distill_alpha,
        **teacher.describe(),
    }


# --- training --------------------------------------------------------------------------------


def distillation_loss(student, labels, teacher=None, temperature=2.0, alpha=0.5, smoothing=0.0):
    """(1 - alpha) CE(student, labels) + alpha T^2 KL(softmax(teacher/T) || softmax(student/T)).

    Batch means; rows labelled IGNORE_INDEX count in the KL term only. Without `teacher` (or with
    alpha 0) it is the plain cross-entropy. The T^2 keeps the soft term's gradients on the scale
    of the hard term's as T changes (Hinton et al., 2015).
    """
    import torch
    import torch.nn.functional as F

    student = student.float()  # the loss in FP32, also under bf16 / fp16 autocast
    labelled = labels != IGNORE_INDEX
    if bool(labelled.any()):
        ce = F.cross_entropy(student, labels, ignore_index=IGNORE_INDEX, label_smoothing=smoothing)
    else:
        ce = torch.zeros((), dtype=student.dtype, device=student.device)
    if teacher is None or alpha == 0:
        return ce
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.log_softmax(teacher.float() / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return (1 - alpha) * ce + alpha * t * t * kl


class TeacherCollator:
    """Pads like `base` and carries the rows' `teacher_logits` along as a float tensor."""

    def __init__(self, base):
        self.base = base

    def __call__(self, features):
        import torch

        features = [dict(f) for f in features]
        teacher = [f.pop("teacher_logits") for f in features if "teacher_logits" in f]
        batch = self.base(features)
        if teacher:
            batch["teacher_logits"] = torch.tensor(teacher, dtype=torch.float32)
        return batch


def distillation_trainer(temperature: float, alpha: float, smoothing: float = 0.0):
    """A transformers.Trainer subclass whose loss is `distillation_loss` (batches without
    teacher logits, e.g. evaluation, get the plain cross-entropy)."""
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # our loss is a plain per-batch mean

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            teacher = inputs.pop("teacher_logits", None)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = distillation_loss(outputs.logits, labels, teacher, temperature, alpha, smoothing)
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer


# --- CLI -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m training.distill logits RUN_DIR --out FILE` | `show FILE`."""
    import argparse
    from functools import partial

    from common.cli import given, with_default

    p = argparse.ArgumentParser(
        prog="python -m training.distill", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("logits", help="score a teacher run's rows and write its logits file")
    w.add_argument("run_dir", type=Path, help="the teacher's training run directory")
    w.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    # The defaults are teacher_logits_of_run's own: a flag not given is not passed.
    d = partial(with_default, teacher_logits_of_run)
    w.add_argument("--batch-size", type=int, help=d("batch_size", "texts per forward pass"))
    w.add_argument(
        "--augment-copies",
        type=int,
        help=d("augment_copies", "also score N perturbed copies of the training texts"),
    )
    w.add_argument("--augment-seed", type=int, help=d("augment_seed", "seed of the copies"))
    s = sub.add_parser("show", help="print a logits file's provenance")
    s.add_argument("file", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    a = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if a.command == "logits":
            command = shlex.join(["python", "-m", "training.distill", *argv])
            options = given(a, ("batch_size", "augment_copies", "augment_seed"))
            teacher = teacher_logits_of_run(a.run_dir, command=command, **options)
            path = teacher.save(a.out)
            summary = {"file": str(path), "bytes": path.stat().st_size, **teacher.meta["teacher"]}
            print(json.dumps(summary, indent=2))
        else:
            print(json.dumps(TeacherLogits.load(a.file).meta, indent=2))
    except (TeacherLogitsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
