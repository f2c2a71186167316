"""Typed configuration of a batch-scoring run (no side effects on import)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMATS = ("csv", "jsonl", "parquet")
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class ScoringError(Exception):
    """A problem the user can fix (bad input, bad options, unreachable service)."""


def detect_format(path: Path, override: str | None = None, *, output: bool = False) -> str:
    """Format from `override` or the file extension (`.gz` allowed on inputs for csv/jsonl)."""
    if override is not None:
        if override not in FORMATS:
            raise ScoringError(f"unknown format {override!r}: choose one of {', '.join(FORMATS)}")
        return override
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        if output:
            raise ScoringError(f"{path}: compressed output is not supported (resumable appends)")
        suffixes = suffixes[:-1]
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and path.suffix.lower() == ".gz"):
        kind = "output" if output else "input"
        raise ScoringError(
            f"cannot tell the {kind} format of {path} from its extension: use .csv, .jsonl or "
            f".parquet, or pass --{kind}-format"
        )
    return fmt


@dataclass
class ScoringConfig:
    """Options of one scoring run. Defaults were chosen by measurement (see scoring/bench.py)."""

    input: Path
    output: Path
    text_column: str
    url: str = "http://127.0.0.1:3000"
    input_format: str | None = None  # None: from the extension
    output_format: str | None = None
    id_column: str | None = None  # keep only this input column (plus predictions)
    all_scores: bool = False  # add one `score_<label>` column per label
    prefix: str = ""  # prefix of the added columns (e.g. "pred_" if the input has a `label`)
    batch_size: int = 64  # texts per request (the service accepts up to MAX_ITEMS=64)
    concurrency: int = 4  # requests in flight
    chunk_size: int = 2000  # rows per committed output chunk (and checkpoint)
    timeout: float = 60.0  # seconds per request
    retries: int = 5  # per request, on connection errors and 5xx, exponential backoff
    backoff: float = 0.5  # first retry delay in seconds (doubles each time, capped at 30 s)
    limit: int | None = None  # score only the first N rows
    overwrite: bool = False  # discard an existing output / checkpoint and start over
    progress: bool = True  # tqdm progress bar on stderr

    def __post_init__(self) -> None:
        self.input = Path(self.input)
        self.output = Path(self.output)
        self.url = self.url.rstrip("/")
        for name in ("batch_size", "concurrency", "chunk_size"):
            if getattr(self, name) < 1:
                raise ScoringError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.retries < 0:
            raise ScoringError(f"retries must be >= 0, got {self.retries}")
        if self.timeout <= 0:
            raise ScoringError(f"timeout must be > 0, got {self.timeout}")
        if self.limit is not None and self.limit < 0:
            raise ScoringError(f"limit must be >= 0, got {self.limit}")
        if not self.url.startswith(("http://", "https://")):
            raise ScoringError(f"url must start with http:// or https://, got {self.url!r}")
        if self.input.resolve() == self.output.resolve():
            raise ScoringError(f"output {self.output} must differ from the input")

    @property
    def in_format(self) -> str:
        return detect_format(self.input, self.input_format)

    @property
    def out_format(self) -> str:
        return detect_format(self.output, self.output_format, output=True)
