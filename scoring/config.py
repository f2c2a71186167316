"""Typed configuration of a batch-scoring run (no side effects on import)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from serving.schema import MAX_ITEMS, MAX_TEXT_CHARS

FORMATS = ("csv", "jsonl", "parquet")
ENGINES = ("http", "ray")
API_KEY_ENV = "SENTIMENT_API_KEY"  # the key from the environment: out of shell history and `ps`
HTTP_BATCH_SIZE = MAX_ITEMS  # texts per request: the service's default MAX_ITEMS
RAY_BATCH_SIZE = 1024  # rows per actor call (measured: python -m experiments.scoring_engines)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class ScoringError(Exception):
    """A problem the user can fix (bad input, bad options, unreachable service)."""


def is_uri(value: str | Path) -> bool:
    """`s3://...`, `gs://...`, `file://...`: read through pyarrow's filesystems."""
    return isinstance(value, str) and bool(_URI.match(value))


def path_part(value: str | Path) -> PurePosixPath | Path:
    """The path of a local path or a URI (for its extension and name)."""
    return PurePosixPath(urlparse(value).path) if is_uri(value) else Path(value)


def detect_format(path: str | Path, override: str | None = None, *, output: bool = False) -> str:
    """Format from `override` or the file extension (`.gz` allowed on inputs for csv/jsonl)."""
    if override is not None:
        if override not in FORMATS:
            raise ScoringError(f"unknown format {override!r}: choose one of {', '.join(FORMATS)}")
        return override
    path = path_part(path)
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
    """Options of one scoring run, for either engine. Defaults were chosen by measurement
    (experiments/scoring_grid.py for the HTTP engine, experiments/scoring_engines.py for the Ray
    engine)."""

    input: str | Path  # HTTP engine: a local file; Ray engine: a file, directory, glob or URI
    output: str | Path  # HTTP engine: a local file; Ray engine: a local file or a URI
    text_column: str
    engine: str = "http"  # "http": a running service; "ray": Ray Data actors, no HTTP
    input_format: str | None = None  # None: from the extension
    output_format: str | None = None
    id_column: str | None = None  # keep only this input column (plus predictions)
    all_scores: bool = False  # add one `score_<label>` column per label
    prefix: str = ""  # prefix of the added columns (e.g. "pred_" if the input has a `label`)
    batch_size: int | None = None  # texts per request (64) / rows per actor call (1024)
    limit: int | None = None  # score only the first N rows
    overwrite: bool = False  # discard an existing output / checkpoint and start over
    progress: bool = True  # progress bar on stderr
    # --- HTTP engine ---
    url: str = "http://127.0.0.1:3000"
    api_key: str | None = field(default=None, repr=False)  # None: $SENTIMENT_API_KEY
    concurrency: int = 4  # requests in flight
    chunk_size: int = 2000  # rows per committed output chunk (and checkpoint)
    timeout: float = 60.0  # seconds per request
    retries: int = 5  # per request, on connection errors and 5xx, exponential backoff
    backoff: float = 0.5  # first retry delay in seconds (doubles each time, capped at 30 s)
    # --- Ray engine ---
    model: str | None = None  # stored-model tag, model directory or URI; None: the service's
    actors: int | None = None  # model actors (one CPU each); None: one per CPU of the cluster
    address: str | None = None  # Ray cluster; None: $RAY_ADDRESS, else a local Ray
    max_text_chars: int = MAX_TEXT_CHARS  # longer texts get an error, as the service's

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ScoringError(
                f"unknown engine {self.engine!r}: choose one of {', '.join(ENGINES)}"
            )
        self.input = self.input if is_uri(self.input) else Path(self.input)
        self.output = self.output if is_uri(self.output) else Path(self.output)
        if self.batch_size is None:
            self.batch_size = RAY_BATCH_SIZE if self.engine == "ray" else HTTP_BATCH_SIZE
        self.url = self.url.rstrip("/")
        for name in ("batch_size", "concurrency", "chunk_size", "actors", "max_text_chars"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ScoringError(f"{name} must be >= 1, got {value}")
        if self.retries < 0:
            raise ScoringError(f"retries must be >= 0, got {self.retries}")
        if self.timeout <= 0:
            raise ScoringError(f"timeout must be > 0, got {self.timeout}")
        if self.limit is not None and self.limit < 0:
            raise ScoringError(f"limit must be >= 0, got {self.limit}")
        if not self.url.startswith(("http://", "https://")):
            raise ScoringError(f"url must start with http:// or https://, got {self.url!r}")
        same = (
            self.input == self.output
            if is_uri(self.input) or is_uri(self.output)
            else self.input.resolve() == self.output.resolve()
        )
        if same:
            raise ScoringError(f"output {self.output} must differ from the input")

    @property
    def in_format(self) -> str:
        return detect_format(self.input, self.input_format)

    @property
    def out_format(self) -> str:
        return detect_format(self.output, self.output_format, output=True)
