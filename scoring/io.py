"""Chunked readers and resumable writers for CSV, JSONL and Parquet (memory stays flat)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.config import ScoringError

try:  # pandas' default NA strings; applied to every column except the text column
    from pandas._libs.parsers import STR_NA_VALUES
except ImportError:  # pragma: no cover
    STR_NA_VALUES = {"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A", "<NA>"}

FINGERPRINT_BYTES = 1 << 20


# ----------------------------------------------------------------------------- reading
# How CSV and JSONL text becomes rows, for both engines (the Ray engine's read tasks call these
# on their file streams): the text column verbatim ("NA" and "" are texts, not missing values),
# JSON values as they are (no dtype or date guessing).
def csv_columns(source) -> list[str]:
    return [str(c) for c in pd.read_csv(source, nrows=0).columns]


def csv_frames(
    source, chunk_size: int, text_column: str, columns: list[str]
) -> Iterator[pd.DataFrame]:
    na = {c: sorted(STR_NA_VALUES) for c in columns if c != text_column}
    yield from pd.read_csv(
        source,
        chunksize=chunk_size,
        dtype={text_column: str},
        keep_default_na=False,
        na_values=na,
    )


def jsonl_frames(source, chunk_size: int) -> Iterator[pd.DataFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 deprecates convert_dates; keep data as is
        yield from pd.read_json(
            source,
            lines=True,
            chunksize=chunk_size,
            dtype=False,
            convert_dates=False,
            keep_default_dates=False,
            encoding="utf-8",
        )


class ChunkReader:
    """Reads `path` in DataFrames of `chunk_size` rows; `columns` is known before any chunk."""

    def __init__(self, path: Path, fmt: str, text_column: str) -> None:
        self.path, self.fmt, self.text_column = Path(path), fmt, text_column
        if not self.path.is_file():
            raise ScoringError(f"input file not found: {self.path}")
        try:
            self.columns = self._read_columns()
        except ScoringError:
            raise
        except Exception as e:
            raise ScoringError(f"cannot read {self.path} as {fmt.upper()}: {e}") from e

    def _read_columns(self) -> list[str]:
        if self.fmt == "parquet":
            self.arrow_schema = pq.ParquetFile(self.path).schema_arrow
            return list(self.arrow_schema.names)
        if self.fmt == "csv":
            return csv_columns(self.path)
        first = next(iter(self._jsonl_chunks(1000)), None)
        if first is None:
            raise ScoringError(f"{self.path} has no JSON lines")
        return [str(c) for c in first.columns]

    def num_rows(self) -> int | None:
        """Exact for Parquet; an estimate from the line count for plain CSV / JSONL."""
        if self.fmt == "parquet":
            return pq.ParquetFile(self.path).metadata.num_rows
        if self.path.suffix.lower() == ".gz":
            return None
        lines, last = 0, b"\n"
        with self.path.open("rb") as f:
            while block := f.read(1 << 22):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"
        return max(lines - (self.fmt == "csv"), 0)

    def _jsonl_chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        yield from jsonl_frames(self.path, chunk_size)

    def _raw_chunks(self, chunk_size: int, skip: int) -> Iterator[pd.DataFrame]:
        if self.fmt == "parquet":
            pf = pq.ParquetFile(self.path)
            groups, start = [], 0
            for i in range(pf.num_row_groups):  # skip whole row groups without reading them
                n = pf.metadata.row_group(i).num_rows
                if start + n > skip or groups:
                    groups.append(i)
                else:
                    start += n
            if not groups:
                return
            for batch in pf.iter_batches(batch_size=chunk_size, row_groups=groups):
                yield batch.to_pandas()
        elif self.fmt == "csv":
            yield from csv_frames(self.path, chunk_size, self.text_column, self.columns)
        else:
            yield from self._jsonl_chunks(chunk_size)

    def chunks(self, chunk_size: int, skip: int = 0) -> Iterator[pd.DataFrame]:
        """Yield frames of `chunk_size` rows (the last may be shorter), starting at row `skip`."""
        buffer: list[pd.DataFrame] = []
        buffered = 0
        seen = 0  # rows read, including those skipped
        raw = self._raw_chunks(chunk_size, skip)
        if self.fmt == "parquet":
            seen = skip - _parquet_rows_to_skip(self.path, skip)
        extra_warned = False
        while True:
            try:
                df = next(raw)
            except StopIteration:
                break
            except Exception as e:
                raise ScoringError(
                    f"cannot read {self.path} as {self.fmt.upper()} after row {seen}: {e}"
                ) from e
            n = len(df)
            if seen + n <= skip:
                seen += n
                continue
            if seen < skip:
                df = df.iloc[skip - seen :]
            seen += n
            extra = [c for c in df.columns if c not in self.columns]
            if extra and not extra_warned:
                warnings.warn(
                    f"{self.path}: columns {extra} do not appear in the first rows and are "
                    "dropped from the output",
                    stacklevel=2,
                )
                extra_warned = True
            buffer.append(df.reindex(columns=self.columns))
            buffered += len(df)
            while buffered >= chunk_size:
                whole = pd.concat(buffer, ignore_index=True) if len(buffer) > 1 else buffer[0]
                yield whole.iloc[:chunk_size].reset_index(drop=True)
                rest = whole.iloc[chunk_size:]
                buffer, buffered = ([rest] if len(rest) else []), len(rest)
        if buffered:
            whole = pd.concat(buffer, ignore_index=True) if len(buffer) > 1 else buffer[0]
            yield whole.reset_index(drop=True)


def _parquet_rows_to_skip(path: Path, skip: int) -> int:
    """Rows still to drop after skipping whole row groups (mirrors `_raw_chunks`)."""
    meta = pq.ParquetFile(path).metadata
    start = 0
    for i in range(meta.num_row_groups):
        n = meta.row_group(i).num_rows
        if start + n > skip:
            break
        start += n
    return skip - start


def fingerprint(path: Path) -> dict:
    """Size plus SHA-256 of the first and last MiB: cheap, and catches a changed input."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            f.seek(max(size - FINGERPRINT_BYTES, FINGERPRINT_BYTES))
            h.update(f.read())
    return {"path": str(path.resolve()), "size": size, "sha256_head_tail": h.hexdigest()}


# ----------------------------------------------------------------------------- durability
def fsync_dir(path: Path) -> None:
    """Make a rename (or a create / unlink) in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(src: Path, dst: Path) -> None:
    """`os.replace` whose result survives a crash: the file's data first, then the directory."""
    with open(src, "rb") as f:
        os.fsync(f.fileno())
    os.replace(src, dst)
    fsync_dir(dst.parent)


class OutputLock:
    """An exclusive lock on `<output>.lock` for the length of a run (flock: released by the
    kernel when the process dies, so a crash never leaves a stale lock). Two runs writing one
    output would interleave their rows; the second one is refused at once."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(output.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> Self:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)  # the output's folder, too
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self.path.read_text().strip() or "?"
                raise ScoringError(
                    f"another run (pid {holder}) is writing {self.path.name[:-5]}: wait for it "
                    f"to finish or stop it ({self.path} is its lock)"
                ) from None
            try:  # the previous holder may have removed the file we opened: lock the new one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding it: see `acquire`
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- checkpoint
@dataclass
class Checkpoint:
    """What has been committed to the output so far; saved atomically after each chunk."""

    input: dict
    options: dict
    columns: list[str]
    labels: list[str]
    rows_done: int = 0
    output_bytes: int = 0  # csv / jsonl: committed length of the .partial file
    parts: int = 0  # parquet: committed part files
    label_counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    elapsed_s: float = 0.0
    version: int = 1

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=1)
        replace_durably(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as e:
            raise ScoringError(
                f"checkpoint {path} is unreadable ({e}); pass --overwrite to start over"
            ) from e


# ----------------------------------------------------------------------------- writing
def prediction_fields(names: dict[str, str], labels: list[str], all_scores: bool) -> list:
    """Arrow fields of the columns added to every row."""
    fields = [pa.field(names["label"], pa.string()), pa.field(names["score"], pa.float64())]
    if all_scores:
        fields += [pa.field(names[f"score_{lab}"], pa.float64()) for lab in labels]
    return [*fields, pa.field(names["error"], pa.string())]


def encode_rows(df: pd.DataFrame, fmt: str, header: bool) -> bytes:
    """CSV (with a header line when `header`) or JSON lines, UTF-8."""
    if fmt == "csv":
        text = df.to_csv(index=False, header=header, lineterminator="\n")
    else:
        text = df.to_json(
            orient="records",
            lines=True,
            force_ascii=False,
            date_format="iso",
            double_precision=15,
        )
        if text and not text.endswith("\n"):
            text += "\n"
    return text.encode("utf-8")


class TextWriter:
    """CSV / JSONL: append to `<output>.partial`, truncated to the checkpoint on resume."""

    def __init__(self, output: Path, fmt: str) -> None:
        self.fmt = fmt
        self.partial = output.with_name(output.name + ".partial")
        self.output = output
        self._file = None

    def open(self, committed_bytes: int) -> None:
        size = self.partial.stat().st_size if self.partial.exists() else 0
        if size < committed_bytes:  # padding it would put zeros where committed rows were
            raise ScoringError(
                f"cannot resume: {self.partial} holds {size} bytes but the checkpoint says "
                f"{committed_bytes} were committed (was it truncated or replaced?); pass "
                "--overwrite to start over"
            )
        if not self.partial.exists():
            self.partial.touch()
            fsync_dir(self.partial.parent)
        self._file = self.partial.open("r+b")
        self._file.truncate(committed_bytes)  # drop a tail written after the last checkpoint
        self._file.seek(committed_bytes)

    def write(self, df: pd.DataFrame, ckpt: Checkpoint) -> None:
        data = encode_rows(df, self.fmt, header=ckpt.output_bytes == 0)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        ckpt.output_bytes += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finalize(self, ckpt: Checkpoint) -> None:
        self.close()
        if not self.partial.exists():  # nothing to score at all: still write a valid file
            self.partial.write_bytes(b"")
        replace_durably(self.partial, self.output)

    def discard(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)


class ParquetWriter:
    """Parquet: one atomically written part file per chunk in `<output>.parts/`, merged at the
    end into a single file (one row group per `row_group_rows`), so a crash never leaves a
    file without its footer."""

    def __init__(self, output: Path, schema: pa.Schema | None, row_group_rows: int = 65536):
        self.output = output
        self.parts_dir = output.with_name(output.name + ".parts")
        self.schema = schema
        self.row_group_rows = row_group_rows

    def _part(self, i: int) -> Path:
        return self.parts_dir / f"part-{i:06d}.parquet"

    def open(self, committed_parts: int) -> None:
        missing = [p.name for p in map(self._part, range(committed_parts)) if not p.is_file()]
        if missing:
            raise ScoringError(
                f"cannot resume: the checkpoint counts {committed_parts} committed part files "
                f"but {len(missing)} are missing from {self.parts_dir} (first: {missing[0]}); "
                "pass --overwrite to start over"
            )
        if not self.parts_dir.exists():
            self.parts_dir.mkdir(parents=True)
            fsync_dir(self.parts_dir.parent)
        for p in self.parts_dir.iterdir():  # parts (or temp files) past the checkpoint
            if (
                not (p.name.startswith("part-") and p.suffix == ".parquet")
                or int(p.stem[5:]) >= committed_parts
            ):
                p.unlink()
        if committed_parts and self.schema is None:
            self.schema = pq.read_schema(self._part(0))

    def write(self, df: pd.DataFrame, ckpt: Checkpoint) -> None:
        try:
            table = pa.Table.from_pandas(df, schema=self.schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ScoringError(
                f"rows {ckpt.rows_done}..{ckpt.rows_done + len(df) - 1} do not fit the Parquet "
                f"schema set by the first rows ({e}); write CSV/JSONL or fix the input types"
            ) from e
        path = self._part(ckpt.parts)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        replace_durably(tmp, path)
        ckpt.parts += 1

    def close(self) -> None:
        pass

    def finalize(self, ckpt: Checkpoint) -> None:
        tmp = self.output.with_name(self.output.name + ".tmp")
        with pq.ParquetWriter(tmp, self.schema) as writer:
            pending = self.schema.empty_table()
            for i in range(ckpt.parts):
                pending = pa.concat_tables(
                    [pending, pq.read_table(self._part(i), schema=self.schema)]
                )
                full = pending.num_rows - pending.num_rows % self.row_group_rows
                if full:  # whole row groups out, the remainder carries over
                    writer.write_table(pending.slice(0, full), self.row_group_rows)
                    pending = pending.slice(full)
            if pending.num_rows:
                writer.write_table(pending, self.row_group_rows)
        replace_durably(tmp, self.output)
        shutil.rmtree(self.parts_dir)

    def discard(self) -> None:
        shutil.rmtree(self.parts_dir, ignore_errors=True)


def arrow_schema(
    first: pd.DataFrame, input_schema: pa.Schema | None, keep: list[str], pred_fields: list
) -> pa.Schema:
    """Output schema: input types (from the Parquet input, else inferred from the first chunk;
    all-null columns become strings), then the prediction columns."""
    inferred = pa.Schema.from_pandas(first[keep], preserve_index=False)
    fields = []
    for name in keep:
        f = inferred.field(name)
        if input_schema is not None and name in input_schema.names:
            f = input_schema.field(name)
        if pa.types.is_null(f.type):
            f = pa.field(name, pa.string())
        fields.append(f)
    return pa.schema(fields + pred_fields)
