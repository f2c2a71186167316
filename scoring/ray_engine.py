"""The Ray Data engine: the model itself on a pool of Ray actors, no HTTP, no service.

    read (CSV / JSONL / Parquet: a file, a directory, a glob; local or any pyarrow URI)
      -> map_batches(ModelActor, ActorPoolStrategy(size=actors), num_cpus=1)
      -> the driver writes the one output file, in input order, and commits it at the end

Each actor loads the stored model once with the service's own inference leaf
(`serving.inference.Classifier`, one single-thread ONNX Runtime session) and applies the same
per-row rules as the HTTP engine (`scoring.rows`), so both engines write the same columns and
the same answers. The model files travel once through Ray's object store (`ray.put` of their
bytes): any cluster can run the job, with or without shared storage.

The output is written under a temporary name and renamed to its final name only when every row
is in it: a failed or interrupted job leaves nothing under the final name, and a rerun scores
the whole input again (no resume: docs/scoring.md says why).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray.data.datasource import FileBasedDatasource

from scoring.config import ScoringConfig, ScoringError, detect_format, is_uri
from scoring.io import (
    OutputLock,
    arrow_schema,
    csv_columns,
    csv_frames,
    encode_rows,
    jsonl_frames,
    prediction_fields,
    replace_durably,
)
from scoring.rows import RowResult, assemble, column_names, row_error, skip_reason
from scoring.summary import Summary
from serving.inference import MODEL_FILES, Classifier, available_cpus

READ_ROWS = 1024  # rows per block a read task yields (CSV / JSONL / Parquet alike)
ROW_GROUP_ROWS = 65536  # Parquet output: rows per row group (the HTTP engine's too)
_GLOB_CHARS = set("*?[")
_HIDDEN = ("_", ".")  # _SUCCESS, .crc, ...: not data (Spark / Hadoop conventions)


# ----------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """The input files, in the order their rows are scored and written."""

    filesystem: pafs.FileSystem
    paths: list[str]
    fmt: str


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _glob_match(pattern: list[str], parts: list[str]) -> bool:
    """Segment-wise glob: `*` stays within one directory level, `**` spans any number."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and (
        fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_match(pattern[1:], parts[1:])
    )


def resolve_inputs(spec: str | Path, input_format: str | None = None) -> Inputs:
    """Files of a file, a directory (recursively; names starting with `_` or `.` skipped) or a
    glob, on the local disk or behind a URI; sorted by path, all of one format."""
    spec = str(spec)
    if is_uri(spec):
        try:
            fs, path = pafs.FileSystem.from_uri(spec)
        except (pa.ArrowInvalid, OSError, ValueError) as e:
            raise ScoringError(f"cannot open input {spec}: {e}") from e
    else:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(spec)
    parts = _split(path)
    lead = "/" if path.startswith("/") else ""
    try:
        if any(c in _GLOB_CHARS for c in path):
            fixed = []
            for part in parts:
                if any(c in _GLOB_CHARS for c in part):
                    break
                fixed.append(part)
            base = lead + "/".join(fixed)
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            files = [
                i.path
                for i in infos
                if i.type == pafs.FileType.File and _glob_match(parts, _split(i.path))
            ]
        else:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise ScoringError(f"input not found: {spec}")
            if info.type == pafs.FileType.File:
                files = [info.path]
            else:
                infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
                files = [
                    i.path
                    for i in infos
                    if i.type == pafs.FileType.File
                    and not any(p.startswith(_HIDDEN) for p in _split(i.path[len(path) :]))
                ]
    except OSError as e:
        raise ScoringError(f"cannot list input {spec}: {e}") from e
    files.sort()
    if not files:
        raise ScoringError(f"no input files match {spec}")
    formats: dict[str, list[str]] = {}
    for f in files:
        try:
            formats.setdefault(detect_format(f, input_format), []).append(f)
        except ScoringError:
            formats.setdefault("unknown", []).append(f)
    if len(formats) > 1:
        found = "; ".join(f"{k}: {v[0]} (+{len(v) - 1})" for k, v in sorted(formats.items()))
        raise ScoringError(
            f"{spec} holds files of several formats ({found}); point at one format, e.g. a "
            "glob such as DIR/*.parquet"
        )
    fmt = next(iter(formats))
    if fmt == "unknown":
        detect_format(files[0], input_format)  # raises the usual message
    return Inputs(fs, files, fmt)


def _open(fs: pafs.FileSystem, path: str, fmt: str):
    if fmt == "parquet":
        return fs.open_input_file(path)  # Parquet needs a seekable file
    return fs.open_input_stream(path, compression="detect")


def peek_columns(inputs: Inputs) -> tuple[list[str], pa.Schema | None]:
    """Columns (and the Arrow schema, for Parquet) of the first file; a clear error if it
    cannot be read, before any Ray work starts."""
    path = inputs.paths[0]
    try:
        with _open(inputs.filesystem, path, inputs.fmt) as f:
            if inputs.fmt == "parquet":
                schema = pq.ParquetFile(f).schema_arrow
                return list(schema.names), schema
            if inputs.fmt == "csv":
                return csv_columns(f), None
            first = next(iter(jsonl_frames(f, 1000)), None)
    except Exception as e:
        raise ScoringError(f"cannot read {path} as {inputs.fmt.upper()}: {e}") from e
    if first is None:
        raise ScoringError(f"{path} has no JSON lines")
    return [str(c) for c in first.columns], None


class ScoringInput(FileBasedDatasource):
    """Reads the input files with the HTTP engine's own parsing (`scoring.io`): the text
    column verbatim in CSV ("NA" is a text), JSON values as they are (no dtype or date
    guessing). Ray's `read_csv` / `read_json` would guess types and turn some texts into
    numbers, dates or nulls."""

    def __init__(self, inputs: Inputs, text_column: str, columns: list[str]) -> None:
        super().__init__(inputs.paths, filesystem=inputs.filesystem)
        self.fmt, self.text_column, self.columns = inputs.fmt, text_column, columns

    def _open_input_source(self, filesystem, path, **open_args):
        return _open(filesystem, path, self.fmt)

    def _read_stream(self, f, path: str):
        try:
            if self.fmt == "parquet":
                for batch in pq.ParquetFile(f).iter_batches(batch_size=READ_ROWS):
                    yield batch.to_pandas()
                return
            if self.fmt == "csv":  # NA strings apply to the other columns (of the first file)
                frames = csv_frames(f, READ_ROWS, self.text_column, self.columns)
            else:
                frames = jsonl_frames(f, READ_ROWS)
            yield from frames
        except Exception as e:
            raise ScoringError(f"cannot read {path} as {self.fmt.upper()}: {e}") from e


# ----------------------------------------------------------------------------- the model
@dataclass
class ModelFiles:
    """The stored model's files as bytes (what goes into the object store) and what it is."""

    files: dict[str, bytes]
    name: str  # tag (resolved version) or directory / URI
    labels: list[str]


def default_model_tag() -> str:
    """The tag the service serves by default: $MODEL_TAG, else its settings' default."""
    from serving.settings import ServiceSettings

    return os.environ.get("MODEL_TAG") or ServiceSettings.model_fields["model_tag"].default


def load_model_files(spec: str | None) -> ModelFiles:
    """Read a stored model (tag), a model directory or its URI, and check it loads."""
    spec = spec or default_model_tag()
    if is_uri(spec):
        fs, base = pafs.FileSystem.from_uri(spec)
        name, read = spec, lambda f: _read_uri(fs, f"{base.rstrip('/')}/{f}")
    elif Path(spec).is_dir():
        name, read = spec, lambda f: (Path(spec) / f).read_bytes()
    else:
        import bentoml
        from bentoml.exceptions import BentoMLException

        try:
            model = bentoml.models.get(spec)
        except (BentoMLException, ValueError) as e:
            raise ScoringError(
                f"model {spec!r} is neither a directory nor in the BentoML store "
                f"({os.environ.get('BENTOML_HOME', '~/bentoml')}): {e}; pass --model TAG or DIR"
            ) from e
        name, read = str(model.tag), lambda f: Path(model.path, f).read_bytes()
    try:
        files = {f: read(f) for f in MODEL_FILES}
    except OSError as e:
        raise ScoringError(f"model {name}: cannot read its files ({e})") from e
    with tempfile.TemporaryDirectory(prefix="sentiment-model-") as tmp:
        for f, data in files.items():
            Path(tmp, f).write_bytes(data)
        try:  # every file, the ONNX graph included: a broken model fails here, not in actors
            labels = Classifier.from_dir(tmp, threads=1).labels
        except (OSError, ValueError) as e:
            raise ScoringError(f"model {name} does not load: {e}") from e
    return ModelFiles(files, name, labels)


def _read_uri(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


class ModelActor:
    """A Ray Data UDF: loads the model once, then maps a pandas batch to the output rows
    (the kept input columns, label, score[, score_<label>], error), in the batch's order."""

    def __init__(
        self,
        model: list,  # [ObjectRef of ModelFiles.files]: in a list, so Ray does not inline it
        text_column: str,
        columns: list[str],
        keep: list[str],
        names: dict[str, str],
        labels: list[str],
        all_scores: bool,
        max_chars: int | None,
    ) -> None:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per actor: no thread pool
        files = ray.get(model[0])
        tmp = tempfile.mkdtemp(prefix="sentiment-model-")
        try:
            for f, data in files.items():
                Path(tmp, f).write_bytes(data)
            self.classifier = Classifier.from_dir(tmp, threads=1)  # one core per actor
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the session holds the model in memory
        self.text_column, self.columns, self.keep = text_column, columns, keep
        self.names, self.labels, self.all_scores = names, labels, all_scores
        self.max_chars = max_chars

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.reindex(columns=self.columns)  # a file without the column: missing text
        texts = batch[self.text_column].tolist()
        results = [RowResult(None, row_error(t, self.max_chars)) for t in texts]
        ok = [i for i, r in enumerate(results) if r.error is None]
        for i, p in zip(ok, self.classifier.predict([texts[i] for i in ok]), strict=True):
            results[i] = RowResult(p)
        return assemble(batch, self.keep, self.names, self.labels, self.all_scores, results)


# ----------------------------------------------------------------------------- output
class OutputFile:
    """The one output file, written in input order to `<output>.tmp` and renamed to its final
    name when complete (locally with fsyncs; on object stores a copy, whose target appears
    whole or not at all)."""

    def __init__(self, target: str | Path, fmt: str) -> None:
        self.local = not is_uri(target)
        if self.local:
            self.fs, self.path = pafs.LocalFileSystem(), os.path.abspath(target)
        else:
            self.fs, self.path = pafs.FileSystem.from_uri(str(target))
        self.tmp = self.path + ".tmp"
        self.fmt = fmt
        self.schema_for = None  # the first rows -> the Parquet schema (set by the caller)
        self.empty: pd.DataFrame | None = None  # the columns, for an output of no rows
        self._stream = self._parquet = None
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self.rows = 0

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def open(self) -> None:
        if not self.local:
            parent = self.path.rsplit("/", 1)[0]
            self.fs.create_dir(parent, recursive=True)
        self._stream = self.fs.open_output_stream(self.tmp)

    def write(self, df: pd.DataFrame) -> None:
        if self.fmt != "parquet":
            self._stream.write(encode_rows(df, self.fmt, header=self.rows == 0))
        else:  # whole row groups; the schema comes from the first ~65k rows, not the first 1k
            self._pending.append(df)
            self._pending_rows += len(df)
            if self._pending_rows >= ROW_GROUP_ROWS:
                self._flush()
        self.rows += len(df)

    def _flush(self) -> None:
        df = pd.concat(self._pending, ignore_index=True) if self._pending else self.empty
        self._pending, self._pending_rows = [], 0
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._stream, self.schema_for(df))
        try:
            table = pa.Table.from_pandas(df, schema=self._parquet.schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ScoringError(
                f"rows {self.rows - len(df)}.. do not fit the Parquet schema set by the first "
                f"rows ({e}); write CSV/JSONL or fix the input types"
            ) from e
        self._parquet.write_table(table, ROW_GROUP_ROWS)

    def commit(self) -> None:
        if self.fmt == "parquet" and (self._pending or self._parquet is None):
            self._flush()
        if self._parquet is not None:
            self._parquet.close()
        self._stream.close()
        if self.local:
            replace_durably(Path(self.tmp), Path(self.path))
        else:  # object stores cannot rename: a server-side copy appears whole, then clean up
            self.fs.copy_file(self.tmp, self.path)
            self.fs.delete_file(self.tmp)

    def discard(self) -> None:
        for closing in (self._parquet, self._stream):  # best effort: the temp file goes anyway
            with contextlib.suppress(Exception):
                if closing is not None:
                    closing.close()
        with contextlib.suppress(OSError):
            self.fs.delete_file(self.tmp)


# ----------------------------------------------------------------------------- the job
def init_ray(cfg: ScoringConfig) -> bool:
    """Connect to `--address` / $RAY_ADDRESS, or start a local Ray (one CPU per core). True
    when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=available_cpus(), include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ScoringError(f"cannot start or reach Ray at {address or 'local'}: {e}") from e
    return True


def _root_cause(e: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (RayTaskError, UserCodeException)."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        inner = getattr(e, "cause", None) or e.__cause__
        if inner is None:
            break
        e = inner
    return e


def score_with_ray(cfg: ScoringConfig) -> Summary:
    """Score `cfg.input` into `cfg.output` on Ray Data actors (see the module docstring)."""
    inputs = resolve_inputs(cfg.input, cfg.input_format)
    out_fmt = cfg.out_format
    columns, input_schema = peek_columns(inputs)
    available = ", ".join(map(repr, columns))
    for role, col in (("text", cfg.text_column), ("id", cfg.id_column)):
        if col is not None and col not in columns:
            raise ScoringError(
                f"{role} column {col!r} not found in {inputs.paths[0]}; available columns: "
                f"{available}"
            )
    keep = [cfg.id_column] if cfg.id_column else columns
    out = OutputFile(cfg.output, out_fmt)
    lock = OutputLock(Path(out.path)) if out.local else None  # no lock on object stores
    if lock is not None:
        lock.acquire()
    try:
        if out.exists() and not cfg.overwrite:
            raise ScoringError(
                f"output {cfg.output} already exists (a finished run); pass --overwrite to redo it"
            )
        model = load_model_files(cfg.model)
        names = column_names(cfg.prefix, model.labels, cfg.all_scores)
        clash = sorted(set(keep) & set(names.values()))
        if clash:
            raise ScoringError(
                f"the input already has column(s) {clash}; pass --prefix (e.g. --prefix pred_) "
                "or --id-column to name the added columns apart"
            )
        fields = prediction_fields(names, model.labels, cfg.all_scores)
        out.schema_for = lambda df: arrow_schema(df, input_schema, keep, fields)
        empty = pd.DataFrame(columns=keep)
        out.empty = assemble(empty, keep, names, model.labels, cfg.all_scores, [])
        return _run(cfg, inputs, columns, keep, names, model, out)
    finally:
        if lock is not None:
            lock.release()


def _run(
    cfg: ScoringConfig,
    inputs: Inputs,
    columns: list[str],
    keep: list[str],
    names: dict[str, str],
    model: ModelFiles,
    out: OutputFile,
) -> Summary:
    start = time.perf_counter()
    started = init_ray(cfg)
    startup = time.perf_counter() - start
    label_counts: Counter = Counter()
    skipped: Counter = Counter()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come out in input order
        if not cfg.progress:  # not even the warning that progress bars are off
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx.enable_progress_bars = cfg.progress
        ctx.print_on_execution_start = cfg.progress
        actors = cfg.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Read tasks take no CPU: the actors own the cores (one each), reading is I/O.
        ds = ray.data.read_datasource(
            ScoringInput(inputs, cfg.text_column, columns),
            num_cpus=0,
            override_num_blocks=max(len(inputs.paths), 4 * actors),
        )
        if cfg.limit is not None:
            ds = ds.limit(cfg.limit)
        ds = ds.map_batches(
            ModelActor,
            fn_constructor_args=(
                [ray.put(model.files)],
                cfg.text_column,
                columns,
                keep,
                names,
                model.labels,
                cfg.all_scores,
                cfg.max_text_chars,
            ),
            batch_size=cfg.batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
        )
        out.open()
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                out.write(batch)
                for label, err in zip(batch[names["label"]], batch[names["error"]], strict=True):
                    if isinstance(err, str):
                        skipped[skip_reason(err)] += 1
                    else:
                        label_counts[label] += 1
            out.commit()
        except BaseException:
            out.discard()
            raise
    except Exception as e:  # a failed Ray job: name the cause, not Ray's wrappers
        if isinstance(e, ScoringError) and not isinstance(e, ray.exceptions.RayError):
            raise
        cause = _root_cause(e)
        if isinstance(cause, ScoringError):
            raise ScoringError(str(cause)) from e
        raise ScoringError(f"the Ray job failed: {type(cause).__name__}: {cause}") from e
    finally:
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - start
    return Summary(
        output=cfg.output,
        rows=out.rows,
        rows_this_run=out.rows,
        seconds=seconds,
        label_counts=dict(label_counts),
        skipped=dict(skipped),
        engine="ray",
        extra={
            "actors": actors,
            "batch size": cfg.batch_size,
            "ray start-up": f"{startup:.1f} s",
            "model": model.name,
        },
    )
