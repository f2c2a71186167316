"""Read prediction records: the service's log files (plain or rotated and gzipped), or an export
from Cloud Logging (JSON lines of log entries, or the JSON array `gcloud logging read
--format=json` prints), where each record sits under `jsonPayload`."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

LOG_SUFFIXES = (".jsonl", ".json", ".log", ".ndjson")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class LogError(ValueError):
    """The logs cannot be read or hold nothing to report on; the message says why."""


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC if no zone is given) or a duration back from now: 30m, 24h, 7d."""
    text = value.strip()
    if match := _DURATION.fullmatch(text):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise LogError(
            f"{value!r} is not a time: give ISO-8601 (2026-11-24T10:00:00Z) or a duration "
            "back from now (30m, 24h, 7d)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def log_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to read: each given file, and the log files under each given directory
    (names with .jsonl / .json / .log / .ndjson, optionally rotated: .1, .2.gz, ...)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_log(p.name))
            if not found:
                raise LogError(f"{path}: no log files there (*.jsonl, *.json, *.log, rotated)")
            files.extend(found)
        else:
            raise LogError(f"{path}: no such file or directory")
    return files


def _is_log(name: str) -> bool:
    stem = name.removesuffix(".gz")
    stem = re.sub(r"\.\d+$", "", stem)  # rotated: predictions-0.jsonl.1(.gz)
    return stem.endswith(LOG_SUFFIXES)


def _lines(path: Path) -> Iterator[str]:
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            head = f.read(1)
            while head.isspace():
                head = f.read(1)
            if head == "[":  # one JSON array (gcloud logging read --format=json)
                try:
                    entries = json.loads(head + f.read())
                except json.JSONDecodeError as e:
                    raise LogError(f"{path}: starts like a JSON array but is not one ({e})") from e
                for entry in entries:
                    yield entry if isinstance(entry, str) else json.dumps(entry)
                return
            first = head + f.readline()
            yield first
            yield from f
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise LogError(f"{path}: cannot read it ({e})") from e


@dataclass
class Records:
    """Prediction records as columns, in time order, plus what was skipped and why."""

    time: np.ndarray  # epoch seconds
    chars: np.ndarray
    tokens: np.ndarray
    truncated: np.ndarray
    unk: np.ndarray
    score: np.ndarray
    label: list[str]
    files: list[Path] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)  # records per model, before filtering

    def __len__(self) -> int:
        return len(self.time)

    def select(self, keep: np.ndarray) -> Records:
        return Records(
            self.time[keep],
            self.chars[keep],
            self.tokens[keep],
            self.truncated[keep],
            self.unk[keep],
            self.score[keep],
            [label for label, k in zip(self.label, keep, strict=True) if k],
            self.files,
            self.skipped,
            self.models,
        )


def read_records(
    paths: Sequence[str | Path],
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
) -> Records:
    """Every prediction record in `paths` with since <= ts < until (and of `model`, if given)."""
    files = log_files(paths)
    lo = since.timestamp() if since else -np.inf
    hi = until.timestamp() if until else np.inf
    cols: dict[str, list] = {k: [] for k in ("time", "chars", "tokens", "truncated", "unk")}
    cols["score"], labels = [], []
    skipped, models = Counter(), Counter()
    for path in files:
        for record in _records(_lines(path), skipped):
            try:
                t = datetime.fromisoformat(record["ts"]).timestamp()
                row = (
                    int(record["chars"]),
                    int(record["tokens"]),
                    bool(record["truncated"]),
                    int(record["unk"]),
                    float(record["score"]),
                )
                label = str(record["label"])
            except (KeyError, TypeError, ValueError):
                skipped["malformed prediction records"] += 1
                continue
            if not lo <= t < hi:
                skipped["outside the time range"] += 1
                continue
            models[str(record.get("model"))] += 1
            if model is not None and record.get("model") != model:
                skipped["of another model"] += 1
                continue
            cols["time"].append(t)
            for name, value in zip(
                ("chars", "tokens", "truncated", "unk", "score"), row, strict=True
            ):
                cols[name].append(value)
            labels.append(label)
    order = np.argsort(np.asarray(cols["time"], np.float64), kind="stable")
    arrays = {k: np.asarray(v, np.float64)[order] for k, v in cols.items()}
    return Records(
        arrays["time"],
        arrays["chars"],
        arrays["tokens"],
        arrays["truncated"],
        arrays["unk"],
        arrays["score"],
        [labels[i] for i in order],
        files,
        skipped,
        models,
    )


def _records(lines: Iterable[str], skipped: Counter) -> Iterator[dict]:
    """The prediction records among `lines` (plain, or under a log entry's jsonPayload)."""
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            skipped["lines that are not JSON"] += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("jsonPayload"), dict):
            entry = entry["jsonPayload"]
        if not isinstance(entry, dict) or entry.get("event") != "prediction":
            skipped["other log entries"] += 1
            continue
        yield entry
