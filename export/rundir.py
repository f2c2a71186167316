"""Read and validate a training run directory (docs/contracts.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")
RUN_INFO_KEYS = ("run_id", "base_model", "labels", "max_length", "data_fingerprint")


class RunDirError(ValueError):
    """The run directory is missing or does not follow the training-run contract."""


@dataclass(frozen=True)
class RunDir:
    """A validated training run: where its model and data are, and what run_info.json says."""

    path: Path
    info: dict

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    @property
    def max_length(self) -> int:
        return int(self.info["max_length"])

    def rows(self, split: str, limit: int | None = None) -> list[dict]:
        """The `{"text", "label"}` rows of `data/<split>.jsonl` (first `limit` of them)."""
        return read_rows(self.path / "data" / f"{split}.jsonl", len(self.labels), limit)


def read_rows(path: Path, num_labels: int, limit: int | None = None) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunDirError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            text, label = (
                (row.get("text"), row.get("label")) if isinstance(row, dict) else (None, None)
            )
            if not isinstance(text, str) or not isinstance(label, int) or isinstance(label, bool):
                raise RunDirError(
                    f'{path}:{lineno}: expected {{"text": str, "label": int}}, got {line.strip()[:80]}'
                )
            if not 0 <= label < num_labels:
                raise RunDirError(
                    f"{path}:{lineno}: label {label} is not a class id 0..{num_labels - 1}"
                )
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise RunDirError(f"{path} has no rows")
    return rows


def load_run_dir(path: Path | str) -> RunDir:
    """Check that `path` is a training run directory and read its run_info.json."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"run directory {path} does not exist (train first: python -m training)")
    if not path.is_dir():
        raise RunDirError(f"run directory {path} is not a directory")
    info_path = path / "run_info.json"
    if not info_path.is_file():
        raise RunDirError(f"{path} is not a training run: run_info.json is missing")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RunDirError(f"{info_path} is not valid JSON ({e.msg})") from e
    if not isinstance(info, dict):
        raise RunDirError(f"{info_path} must hold a JSON object")
    missing = [key for key in RUN_INFO_KEYS if key not in info]
    if missing:
        raise RunDirError(f"{info_path} lacks {', '.join(missing)}")
    labels = info["labels"]
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) for x in labels)
    ):
        raise RunDirError(f"{info_path}: labels must be a list of >= 2 names, got {labels!r}")
    if not isinstance(info["max_length"], int) or info["max_length"] < 2:
        raise RunDirError(
            f"{info_path}: max_length must be an int >= 2, got {info['max_length']!r}"
        )

    model_dir = path / "model"
    if not model_dir.is_dir():
        raise RunDirError(f"{path} has no model/ directory (the HF save_pretrained output)")
    for name in ("config.json", "tokenizer.json"):
        if not (model_dir / name).is_file():
            raise RunDirError(f"{model_dir} lacks {name}")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        raise RunDirError(f"{model_dir} has no model weights (*.safetensors)")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    model_labels = [id2label.get(str(i)) for i in range(len(id2label))]
    if model_labels and model_labels != labels:
        raise RunDirError(
            f"labels disagree: run_info.json has {labels}, model/config.json has {model_labels}"
        )
    for split in ("validation", "test"):
        if not (path / "data" / f"{split}.jsonl").is_file():
            raise RunDirError(f"{path} lacks data/{split}.jsonl")
    return RunDir(path=path, info=info)
