"""The scoring loop: read chunks, classify them with requests in flight, commit in order."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from scoring.client import ClassifyClient
from scoring.config import API_KEY_ENV, ScoringConfig, ScoringError, is_uri
from scoring.io import (
    Checkpoint,
    ChunkReader,
    OutputLock,
    ParquetWriter,
    TextWriter,
    arrow_schema,
    fingerprint,
    prediction_fields,
)
from scoring.rows import RowResult, assemble, column_names, row_error, skip_reason
from scoring.summary import Summary


def state_path(output: Path) -> Path:
    """The checkpoint that lives next to an unfinished output."""
    return output.with_name(output.name + ".checkpoint.json")


def _prepare_output(cfg: ScoringConfig, ckpt_path: Path) -> None:
    leftovers = [
        p
        for p in (
            cfg.output,
            ckpt_path,
            cfg.output.with_name(cfg.output.name + ".partial"),
            cfg.output.with_name(cfg.output.name + ".parts"),
        )
        if p.exists()
    ]
    if cfg.overwrite:
        for p in leftovers:
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            else:
                p.unlink()
        return
    if cfg.output.exists():
        raise ScoringError(
            f"output {cfg.output} already exists (a finished run); pass --overwrite to redo it"
        )
    if not ckpt_path.exists() and leftovers:
        raise ScoringError(
            f"{leftovers[0]} exists without a checkpoint ({ckpt_path.name}), so it cannot be "
            "resumed safely; pass --overwrite to start over"
        )


def _check_resumable(
    output: Path, ckpt: Checkpoint, fp: dict, options: dict, columns: list[str]
) -> None:
    for what, old, new in (
        ("input file", ckpt.input, fp),
        ("options", ckpt.options, options),
        ("input columns", ckpt.columns, columns),
    ):
        if old != new:
            raise ScoringError(
                f"cannot resume {output}: the {what} changed since the checkpoint "
                f"({old} -> {new}); pass --overwrite to start over"
            )


def score_file(
    cfg: ScoringConfig, on_commit: Callable[[Checkpoint], None] | None = None
) -> Summary:
    """Score `cfg.input` into `cfg.output` with `cfg.engine`.

    HTTP engine: through the service at `cfg.url`, resuming from the checkpoint when there is
    one; `on_commit` is called after each chunk is durably written and checkpointed. Ray
    engine: `scoring.ray_engine.score_with_ray`."""
    if cfg.engine == "ray":
        from scoring.ray_engine import score_with_ray

        return score_with_ray(cfg)
    for role, value in (("input", cfg.input), ("output", cfg.output)):
        if is_uri(value):
            raise ScoringError(
                f"the HTTP engine reads and writes local files; {role} {value} is a URI "
                "(use --engine ray for URIs, directories and globs)"
            )
    in_fmt, out_fmt = cfg.in_format, cfg.out_format
    reader = ChunkReader(cfg.input, in_fmt, cfg.text_column)
    available = ", ".join(map(repr, reader.columns))
    for role, col in (("text", cfg.text_column), ("id", cfg.id_column)):
        if col is not None and col not in reader.columns:
            raise ScoringError(
                f"{role} column {col!r} not found in {cfg.input}; available columns: {available}"
            )
    with OutputLock(cfg.output):  # before anything is cleaned up or written
        return _score_http(cfg, reader, in_fmt, out_fmt, on_commit)


def _score_http(
    cfg: ScoringConfig,
    reader: ChunkReader,
    in_fmt: str,
    out_fmt: str,
    on_commit: Callable[[Checkpoint], None] | None,
) -> Summary:
    keep = [cfg.id_column] if cfg.id_column else list(reader.columns)
    ckpt_path = state_path(cfg.output)
    _prepare_output(cfg, ckpt_path)

    options = {
        "text_column": cfg.text_column,
        "id_column": cfg.id_column,
        "all_scores": cfg.all_scores,
        "prefix": cfg.prefix,
        "input_format": in_fmt,
        "output_format": out_fmt,
    }
    fp = fingerprint(cfg.input)
    ckpt = Checkpoint.load(ckpt_path) if ckpt_path.exists() else None
    if ckpt is not None:  # local checks first: nothing is sent before they pass
        _check_resumable(cfg.output, ckpt, fp, options, list(reader.columns))

    stop = threading.Event()
    api_key = cfg.api_key or os.environ.get(API_KEY_ENV)
    client = ClassifyClient(cfg.url, cfg.timeout, cfg.retries, cfg.backoff, stop, api_key)
    service = client.connect()  # fail fast: unreachable service, no /classify, no key
    labels = service.labels
    # Rows the service would reject get their error here, by the rule the Ray engine applies.
    batch_size = min(cfg.batch_size, service.max_items or cfg.batch_size)
    names = column_names(cfg.prefix, labels, cfg.all_scores)
    clash = sorted(set(keep) & set(names.values()))
    if clash:
        raise ScoringError(
            f"the input already has column(s) {clash}; pass --prefix (e.g. --prefix pred_) "
            "or --id-column to name the added columns apart"
        )
    if ckpt is None:
        ckpt = Checkpoint(input=fp, options=options, columns=list(reader.columns), labels=labels)
        ckpt.save(ckpt_path)
    elif ckpt.labels != labels:
        raise ScoringError(
            f"cannot resume {cfg.output}: the service's labels changed since the checkpoint "
            f"({ckpt.labels} -> {labels}); pass --overwrite to start over"
        )
    resumed_from = ckpt.rows_done

    if out_fmt == "parquet":
        writer = ParquetWriter(cfg.output, schema=None)
        input_schema = getattr(reader, "arrow_schema", None)
    else:
        writer = TextWriter(cfg.output, out_fmt)
    writer.open(ckpt.parts if out_fmt == "parquet" else ckpt.output_bytes)

    total = reader.num_rows()
    if cfg.limit is not None:
        total = cfg.limit if total is None else min(total, cfg.limit)
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        initial=ckpt.rows_done,
        unit="rows",
        unit_scale=True,
        dynamic_ncols=True,
        disable=not cfg.progress,
        file=sys.stderr,
        desc=cfg.input.name,
    )
    label_counts, skipped = Counter(ckpt.label_counts), Counter(ckpt.skipped)
    start, rows_this_run = time.perf_counter(), 0
    executor = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="scoring")

    def submit(df: pd.DataFrame) -> tuple[pd.DataFrame, list, list[Future]]:
        texts = df[cfg.text_column].tolist()
        results: list = [None] * len(texts)
        ok = []
        for i, value in enumerate(texts):
            reason = row_error(value, service.max_text_chars)
            if reason:
                results[i] = RowResult(None, reason)
            else:
                ok.append(i)
        batches = [ok[i : i + batch_size] for i in range(0, len(ok), batch_size)]
        futures = [executor.submit(client.score, [texts[j] for j in b]) for b in batches]
        return df, results, list(zip(batches, futures, strict=True))

    def commit(df: pd.DataFrame, results: list, pending: list) -> None:
        nonlocal rows_this_run
        for batch, fut in pending:  # a fatal error (401, 404, ...) raises here: nothing written
            for j, r in zip(batch, fut.result(), strict=True):
                results[j] = r
        out = assemble(df, keep, names, labels, cfg.all_scores, results)
        if out_fmt == "parquet" and writer.schema is None:
            writer.schema = arrow_schema(
                out, input_schema, keep, prediction_fields(names, labels, cfg.all_scores)
            )
        writer.write(out, ckpt)
        for r in results:
            if r.prediction:
                label_counts[r.prediction["label"]] += 1
            else:
                skipped[skip_reason(r.error)] += 1
        ckpt.rows_done += len(df)
        ckpt.label_counts, ckpt.skipped = dict(label_counts), dict(skipped)
        now = time.perf_counter()
        ckpt.elapsed_s += now - clock[0]
        clock[0] = now
        ckpt.save(ckpt_path)
        rows_this_run += len(df)
        bar.update(len(df))
        if on_commit is not None:
            on_commit(ckpt)

    clock = [start]
    remaining = None if cfg.limit is None else max(cfg.limit - ckpt.rows_done, 0)
    try:
        inflight: deque = deque()
        if remaining != 0:
            for df in reader.chunks(cfg.chunk_size, skip=ckpt.rows_done):
                if remaining is not None:
                    df = df.iloc[:remaining]
                    remaining -= len(df)
                inflight.append(submit(df))
                if len(inflight) > 1:  # keep the next chunk's requests in flight meanwhile
                    commit(*inflight.popleft())
                if remaining == 0:
                    break
        while inflight:
            commit(*inflight.popleft())
        if out_fmt == "parquet" and writer.schema is None:  # no rows at all
            empty = assemble(pd.DataFrame(columns=keep), keep, names, labels, cfg.all_scores, [])
            writer.schema = arrow_schema(
                empty, input_schema, keep, prediction_fields(names, labels, cfg.all_scores)
            )
        writer.finalize(ckpt)
        ckpt_path.unlink()
    except BaseException:
        stop.set()
        raise
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        writer.close()
        bar.close()
        client.close()
    return Summary(
        output=cfg.output,
        rows=ckpt.rows_done,
        rows_this_run=rows_this_run,
        seconds=time.perf_counter() - start,
        label_counts=dict(label_counts),
        skipped=dict(skipped),
        resumed_from=resumed_from,
        requests=client.requests,
        retries=client.retried,
    )
