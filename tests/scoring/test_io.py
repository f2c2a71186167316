"""Chunked reading, resumable writing, checkpoints and fail-fast errors: no server needed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtest.servers import free_port
from scoring.__main__ import parse_args
from scoring.config import (
    HTTP_BATCH_SIZE,
    RAY_BATCH_SIZE,
    ScoringConfig,
    ScoringError,
    detect_format,
)
from scoring.io import Checkpoint, ChunkReader, ParquetWriter, TextWriter, fingerprint
from scoring.score import score_file, state_path


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": range(23),
            "text": [f"review number {i}\nwith a second line" for i in range(23)],
            "stars": [i % 5 for i in range(23)],
        }
    )


def write(df: pd.DataFrame, path) -> None:
    {
        ".csv": lambda: df.to_csv(path, index=False),
        ".jsonl": lambda: df.to_json(path, orient="records", lines=True),
        ".parquet": lambda: df.to_parquet(path, row_group_size=5),
    }[path.suffix]()


def cfg(src, dst, **kw) -> ScoringConfig:
    return ScoringConfig(input=src, output=dst, text_column="text", progress=False, **kw)


def test_detect_format():
    assert detect_format(Path("a/b.CSV")) == "csv"
    assert detect_format(Path("x.jsonl.gz")) == "jsonl"
    assert detect_format(Path("x.pq")) == "parquet"
    assert detect_format(Path("x.txt"), "csv") == "csv"
    with pytest.raises(ScoringError, match=r"x\.txt.*--input-format"):
        detect_format(Path("x.txt"))
    with pytest.raises(ScoringError, match="compressed output"):
        detect_format(Path("x.csv.gz"), output=True)
    with pytest.raises(ScoringError, match="unknown format 'xls'"):
        detect_format(Path("x.csv"), "xls")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("skip", [0, 4, 5, 12, 23])
def test_chunks_cover_every_row_once_from_skip(tmp_path, frame, fmt, skip):
    path = tmp_path / f"in.{fmt}"
    write(frame, path)
    reader = ChunkReader(path, fmt, "text")
    assert reader.columns == ["id", "text", "stars"]
    chunks = list(reader.chunks(chunk_size=7, skip=skip))
    assert all(len(c) == 7 for c in chunks[:-1])
    got = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=frame.columns)
    assert got["id"].tolist() == list(range(skip, 23))
    assert got["text"].tolist() == frame["text"].tolist()[skip:]
    # Parquet: exact, from its metadata. JSONL: one line a row. CSV: an estimate from the line
    # count, so each row's quoted two-line text counts twice (header excluded).
    assert reader.num_rows() == {"parquet": 23, "jsonl": 23, "csv": 46}[fmt]


def test_a_compressed_input_has_no_row_estimate(tmp_path, frame):
    path = tmp_path / "in.csv.gz"
    frame.to_csv(path, index=False)
    reader = ChunkReader(path, "csv", "text")
    assert reader.num_rows() is None  # its lines cannot be counted without decompressing it
    assert sum(len(c) for c in reader.chunks(chunk_size=10)) == 23


def test_csv_text_is_read_verbatim(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,text,n\n1,NA,NA\n2,None,3\n3,,4\n")
    (chunk,) = ChunkReader(path, "csv", "text").chunks(10)
    assert chunk["text"].tolist() == ["NA", "None", ""]  # review texts, not missing values
    assert chunk["n"].isna().tolist() == [True, False, False]  # other columns as pandas reads


def test_unreadable_and_missing_input(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ScoringError, match=r"cannot read .*bad\.parquet as PARQUET"):
        ChunkReader(bad, "parquet", "text")
    with pytest.raises(ScoringError, match="input file not found"):
        ChunkReader(tmp_path / "nope.csv", "csv", "text")


def test_text_writer_truncates_uncommitted_tail(tmp_path, frame):
    out = tmp_path / "out.csv"
    ckpt = Checkpoint(input={}, options={}, columns=[], labels=[])
    w = TextWriter(out, "csv")
    w.open(0)
    w.write(frame.iloc[:10], ckpt)
    committed = ckpt.output_bytes
    w.write(frame.iloc[10:15], ckpt)  # written but never checkpointed
    w.close()
    ckpt.output_bytes = committed
    w = TextWriter(out, "csv")
    w.open(committed)
    w.write(frame.iloc[10:], ckpt)
    w.finalize(ckpt)
    got = pd.read_csv(out)
    assert got["id"].tolist() == list(range(23)) and not w.partial.exists()


def test_parquet_parts_merge_into_one_file(tmp_path, frame):
    out = tmp_path / "out.parquet"
    ckpt = Checkpoint(input={}, options={}, columns=[], labels=[])
    w = ParquetWriter(out, schema=None, row_group_rows=10)
    w.open(0)
    w.schema = pa.Schema.from_pandas(frame, preserve_index=False)
    for start in range(0, 23, 4):
        w.write(frame.iloc[start : start + 4], ckpt)
    (w.parts_dir / "part-000099.parquet").write_bytes(b"torn")  # past the checkpoint
    w = ParquetWriter(out, schema=None, row_group_rows=10)
    w.open(ckpt.parts)  # resume: drops the stray part, reads the schema back
    assert not (w.parts_dir / "part-000099.parquet").exists()
    w.finalize(ckpt)
    pf = pq.ParquetFile(out)
    assert pf.metadata.num_rows == 23 and pf.metadata.num_row_groups == 3
    assert pf.read().to_pandas()["id"].tolist() == list(range(23))
    assert not w.parts_dir.exists()


def test_checkpoint_round_trip_and_corruption(tmp_path):
    path = tmp_path / "x.checkpoint.json"
    ckpt = Checkpoint(input={"size": 1}, options={"a": 1}, columns=["t"], labels=["n", "p"])
    ckpt.rows_done, ckpt.skipped = 40, {"missing text": 2}
    ckpt.save(path)
    assert Checkpoint.load(path) == ckpt
    path.write_text("{truncated")
    with pytest.raises(ScoringError, match="unreadable.*--overwrite"):
        Checkpoint.load(path)


def test_fingerprint_sees_changes(tmp_path, frame):
    path = tmp_path / "in.csv"
    write(frame, path)
    before = fingerprint(path)
    assert fingerprint(path) == before
    path.write_text(path.read_text().replace("review number 7", "review number 8"))
    assert fingerprint(path) != before


def test_missing_column_fails_fast_listing_columns(tmp_path, frame):
    src = tmp_path / "in.csv"
    write(frame, src)
    # The URL answers nothing: the column check must fail before any request is sent.
    bad = ScoringConfig(
        input=src, output=tmp_path / "o.csv", text_column="review", url="http://127.0.0.1:9"
    )
    with pytest.raises(
        ScoringError, match=r"text column 'review' not found.*'id', 'text', 'stars'"
    ):
        score_file(bad)
    assert not (tmp_path / "o.csv").exists()
    with pytest.raises(ScoringError, match="id column 'key' not found"):
        score_file(cfg(src, tmp_path / "o.csv", id_column="key", url="http://127.0.0.1:9"))


def test_unreachable_service_names_the_url(tmp_path, frame):
    src = tmp_path / "in.jsonl"
    write(frame, src)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ScoringError, match=rf"cannot reach the service at {url}"):
        score_file(cfg(src, tmp_path / "o.csv", url=url))


def test_existing_output_needs_overwrite(tmp_path, frame):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(frame, src)
    dst.write_text("old")
    with pytest.raises(ScoringError, match="already exists.*--overwrite"):
        score_file(cfg(src, dst, url="http://127.0.0.1:9"))
    dst.unlink()
    dst.with_name("out.csv.partial").write_text("half")
    with pytest.raises(ScoringError, match="without a checkpoint.*--overwrite"):
        score_file(cfg(src, dst, url="http://127.0.0.1:9"))


def test_resume_refuses_a_changed_input(tmp_path, frame):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(frame, src)
    Checkpoint(input=fingerprint(src), options={}, columns=[], labels=[]).save(state_path(dst))
    write(frame.iloc[:5], src)
    with pytest.raises(ScoringError, match="input file changed.*--overwrite"):
        score_file(cfg(src, dst, url="http://127.0.0.1:9"))


def test_cli_parses_into_config():
    c = parse_args(
        [
            "in.csv",
            "--text-column",
            "t",
            "-o",
            "o.parquet",
            "--batch-size",
            "8",
            "--all-scores",
            "--limit",
            "5",
            "--no-progress",
        ]
    )
    assert (c.batch_size, c.all_scores, c.limit, c.progress, c.out_format) == (
        8,
        True,
        5,
        False,
        "parquet",
    )
    with pytest.raises(ScoringError, match="batch_size must be >= 1"):
        parse_args(["in.csv", "--text-column", "t", "-o", "o.csv", "--batch-size", "0"])


def test_resume_refuses_a_partial_shorter_than_the_checkpoint(tmp_path, frame):
    """Zero-padding a truncated `.partial` would put NUL bytes where committed rows were."""
    out = tmp_path / "out.csv"
    ckpt = Checkpoint(input={}, options={}, columns=[], labels=[])
    w = TextWriter(out, "csv")
    w.open(0)
    w.write(frame, ckpt)
    w.close()
    with w.partial.open("r+b") as f:
        f.truncate(ckpt.output_bytes - 10)
    with pytest.raises(ScoringError, match=r"holds \d+ bytes but the checkpoint says"):
        TextWriter(out, "csv").open(ckpt.output_bytes)
    assert w.partial.stat().st_size == ckpt.output_bytes - 10, "left as it was"
    w.partial.unlink()
    with pytest.raises(ScoringError, match="holds 0 bytes"):
        TextWriter(out, "csv").open(ckpt.output_bytes)


def test_resume_refuses_missing_parquet_parts(tmp_path, frame):
    out = tmp_path / "out.parquet"
    ckpt = Checkpoint(input={}, options={}, columns=[], labels=[])
    w = ParquetWriter(out, schema=pa.Schema.from_pandas(frame, preserve_index=False))
    w.open(0)
    for start in range(0, 23, 8):
        w.write(frame.iloc[start : start + 8], ckpt)
    (w.parts_dir / "part-000001.parquet").unlink()
    with pytest.raises(ScoringError, match=r"3 committed part files but 1 are missing"):
        ParquetWriter(out, schema=None).open(ckpt.parts)


def test_every_rename_is_followed_by_a_directory_fsync(tmp_path, frame, monkeypatch):
    """A rename is durable only once its directory is fsynced: check the order of calls."""
    events = []
    real_replace, real_fsync = os.replace, os.fsync

    def replace(src, dst):
        real_replace(src, dst)
        d = Path(dst).parent.stat()
        events.append(("replace", (d.st_dev, d.st_ino)))

    def fsync(fd):
        real_fsync(fd)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            events.append(("fsync-dir", (st.st_dev, st.st_ino)))

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    ckpt = Checkpoint(input={}, options={}, columns=[], labels=[])
    ckpt.save(tmp_path / "x.checkpoint.json")
    pw = ParquetWriter(tmp_path / "o.parquet", pa.Schema.from_pandas(frame, preserve_index=False))
    pw.open(0)
    pw.write(frame, ckpt)
    pw.finalize(ckpt)
    tw = TextWriter(tmp_path / "o.jsonl", "jsonl")
    tw.open(0)
    tw.write(frame, ckpt)
    tw.finalize(ckpt)
    renames = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert len(renames) == 4  # checkpoint, parquet part, parquet output, jsonl output
    for i in renames:
        assert events[i + 1] == ("fsync-dir", events[i][1]), events


def test_a_locked_output_is_refused_before_anything_else(tmp_path, frame):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(frame, src)
    # Another process holds the lock (flock): this run stops at once, naming it.
    hold = (
        "import sys; from pathlib import Path; from scoring.io import OutputLock; "
        "lock = OutputLock(Path(sys.argv[1])).acquire(); print('ok', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(dst)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(ScoringError, match=rf"another run \(pid {holder.pid}\) is writing"):
            score_file(cfg(src, dst, url="http://127.0.0.1:9", overwrite=True))
    finally:
        holder.communicate("", timeout=30)
    # The holder exited without releasing (as a crash would): its lock file stays, its lock
    # does not, so the next run gets past it (and fails later, on the dead URL).
    assert dst.with_name("out.csv.lock").exists()
    with pytest.raises(ScoringError, match="cannot reach the service"):
        score_file(cfg(src, dst, url="http://127.0.0.1:9"))
    assert not dst.with_name("out.csv.lock").exists()


def test_cli_refuses_options_of_the_other_engine():
    base = ["in.csv", "--text-column", "t", "-o", "o.csv"]
    with pytest.raises(SystemExit):
        parse_args([*base, "--engine", "ray", "--url", "http://x:1"])
    with pytest.raises(SystemExit):
        parse_args([*base, "--actors", "2"])
    c = parse_args([*base, "--engine", "ray", "--actors", "2", "--model", "m:1"])
    assert (c.engine, c.actors, c.model, c.batch_size) == ("ray", 2, "m:1", RAY_BATCH_SIZE)
    assert parse_args(base).batch_size == HTTP_BATCH_SIZE
    assert "api_key" not in repr(parse_args([*base, "--api-key", "secret"]))
