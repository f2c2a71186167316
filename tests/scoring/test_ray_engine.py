"""The Ray Data engine on a local Ray with the tiny model: the HTTP engine's answers, row order
across files, bad rows per row, no output from a failed or interrupted job, exact reruns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import ray

from scoring.config import ScoringConfig, ScoringError
from scoring.score import score_file
from tests.scoring.test_scoring_server import LONG_TEXT, ctrl_c_able, make_frame, read, write

pytestmark = [pytest.mark.slow, pytest.mark.ray]

N_ROWS = 300
BAD = {  # row -> (value, the error both engines must give)
    3: (LONG_TEXT, "text over 2000 characters"),
    10: (None, "missing text"),
    11: ("   ", "empty text"),
    12: ("\u200b\u2060", "empty text"),
}


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray for this module (the engine uses it and leaves it running)."""
    ray.init(  # "local": never a cluster that $RAY_ADDRESS or an earlier `ray start` names
        address="local",
        num_cpus=2,
        object_store_memory=200_000_000,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def frame_with_bad_rows(fmt: str) -> pd.DataFrame:
    df = make_frame(N_ROWS)
    df["review"] = df["review"].astype(object)
    for i, (value, _) in BAD.items():
        df.loc[i, "review"] = value
    df.loc[20, "review"] = "a long review, " + "well acted but far too slow " * 60  # truncated
    if fmt == "jsonl":
        df.loc[13, "review"] = 42  # JSON keeps its type
    return df


def ray_config(src, dst, model, **kw) -> ScoringConfig:
    return ScoringConfig(
        input=src,
        output=dst,
        text_column="review",
        engine="ray",
        model=model,
        progress=False,
        batch_size=32,
        **kw,
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_same_answers_as_the_http_engine(
    local_ray, scoring_server, tiny_bento_model, tmp_path, fmt
):
    """Same model, same rows: the Ray engine (3 files of a directory) writes what the HTTP
    engine (one file) writes: columns, row order, errors, labels, and every row's scores within
    float noise (1e-5): static activation scales make a text's scores independent of the
    batch it runs in (the service groups what arrives together, the engine what an actor reads)."""
    df = frame_with_bad_rows(fmt)
    one, parts = tmp_path / f"all.{fmt}", tmp_path / "parts"
    write(df, one)
    parts.mkdir()
    for k, (a, b) in enumerate([(0, 120), (120, 130), (130, N_ROWS)]):  # uneven files
        write(df.iloc[a:b], parts / f"part-{k}.{fmt}")
    (parts / "_SUCCESS").write_text("")
    http_out, ray_out = tmp_path / f"http.{fmt}", tmp_path / f"ray.{fmt}"
    http_cfg = ScoringConfig(
        input=one,
        output=http_out,
        text_column="review",
        all_scores=True,
        url=scoring_server.url,
        progress=False,
    )
    http_summary = score_file(http_cfg)
    ray_summary = score_file(ray_config(parts, ray_out, str(tiny_bento_model), all_scores=True))
    h, r = read(http_out), read(ray_out)
    assert list(r.columns) == list(h.columns)
    assert r["id"].tolist() == list(range(N_ROWS)), "input order, across files"
    assert r["truth"].tolist() == h["truth"].tolist()
    assert r["error"].fillna("").tolist() == h["error"].fillna("").tolist()
    for i, (_, error) in BAD.items():
        if fmt == "csv" and i == 10:
            error = "empty text"  # CSV has no missing value: an empty field is an empty text
        assert r.loc[i, "error"] == error
    if fmt == "jsonl":
        assert r.loc[13, "error"] == "text is not a string (int)"
    ok = r["error"].isna()
    assert ok.sum() == N_ROWS - len(BAD) - (fmt == "jsonl")
    for column in ("score", "score_positive"):  # the truncated row 20 (a full window) included
        diff = (r.loc[ok, column] - h.loc[ok, column]).abs()
        assert diff.max() <= 1e-5, (diff.idxmax(), diff.max())
    assert r.loc[ok, "label"].tolist() == h.loc[ok, "label"].tolist()
    assert ray_summary.label_counts.keys() == http_summary.label_counts.keys()
    assert ray_summary.skipped == http_summary.skipped
    assert ray_summary.rows == N_ROWS and ray_summary.engine == "ray"
    assert not ray_out.with_name(ray_out.name + ".tmp").exists()


def test_uris_in_and_out(local_ray, tiny_bento_model, tmp_path):
    """Input, output and model as URIs (file:// here; s3:// and gs:// take the same pyarrow
    path)."""
    import bentoml

    model = f"file://{bentoml.models.get(str(tiny_bento_model)).path}"
    src = tmp_path / "in"
    src.mkdir()
    write(make_frame(30), src / "a.parquet")
    write(make_frame(30).assign(id=range(30, 60)), src / "b.parquet")
    out = f"file://{tmp_path}/out/scored.csv"
    summary = score_file(ray_config(f"file://{src}/*.parquet", out, model))
    got = read(tmp_path / "out" / "scored.csv")
    assert got["id"].tolist() == list(range(60)) and summary.rows == 60
    assert got["label"].notna().all() and summary.extra["model"] == model
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scored.csv"]


def test_failed_job_leaves_no_output_then_rerun_is_exact(local_ray, tiny_bento_model, tmp_path):
    """A file that breaks mid-job fails the job with its name; nothing appears under the
    output's name; once it is fixed, the rerun writes every row exactly once."""
    df = make_frame(N_ROWS)
    src = tmp_path / "in"
    src.mkdir()
    write(df.iloc[:200], src / "a.csv")
    good_tail = df.iloc[200:]
    write(good_tail, src / "b.csv")
    text = (src / "b.csv").read_text().splitlines()
    text[50] += ',"an extra field"'
    (src / "b.csv").write_text("\n".join(text) + "\n")
    out = tmp_path / "out.csv"
    cfg = ray_config(src, out, str(tiny_bento_model))
    with pytest.raises(ScoringError, match=r"cannot read .*b\.csv as CSV"):
        score_file(cfg)
    assert not out.exists() and not out.with_name("out.csv.tmp").exists()
    write(good_tail, src / "b.csv")
    summary = score_file(cfg)
    got = read(out)
    assert got["id"].tolist() == list(range(N_ROWS)) and summary.rows == N_ROWS
    assert got["label"].notna().all()


def test_cli_interrupted_then_rerun_is_exact(tiny_bento_model, tmp_path):
    """Ctrl-C on `python -m scoring --engine ray` (its own local Ray): exit 130, no output
    under the final name; the same command again: every row exactly once."""
    n = 6000
    src, out = tmp_path / "in", tmp_path / "out.jsonl"
    src.mkdir()
    df = make_frame(n, seed=2)
    for k in range(12):  # one block per file: output streams out file by file, not at the end
        write(df.iloc[k * 500 : (k + 1) * 500], src / f"part-{k:02d}.parquet")
    cmd = [
        sys.executable,
        "-m",
        "scoring",
        str(src),
        "--text-column",
        "review",
        "-o",
        str(out),
        "--engine",
        "ray",
        "--model",
        str(tiny_bento_model),
        "--no-progress",
        "--batch-size",
        "16",
        "--actors",
        "1",
    ]
    proc = subprocess.Popen(
        ctrl_c_able(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    tmp = out.with_name(out.name + ".tmp")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if tmp.exists() and tmp.stat().st_size > 0:  # rows are being written
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: nothing was written" in err
    assert not out.exists() and not tmp.exists()
    rerun = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"scored {n} rows" in rerun.stdout and "ray engine: actors 1" in rerun.stdout
    got = read(out)
    assert got["id"].tolist() == list(range(n)) and got["label"].notna().all()


def test_cli_joins_a_running_cluster(local_ray, tiny_bento_model, tmp_path):
    """--address: the job runs on an existing Ray cluster (this module's), which outlives it."""
    src, out = tmp_path / "in.parquet", tmp_path / "out.jsonl"
    write(make_frame(40), src)
    cmd = [
        sys.executable,
        "-m",
        "scoring",
        str(src),
        "--text-column",
        "review",
        "-o",
        str(out),
        "--engine",
        "ray",
        "--model",
        str(tiny_bento_model),
        "--no-progress",
        "--address",
        local_ray,
        "--id-column",
        "id",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "ray engine: actors 2" in done.stdout  # the cluster's 2 CPUs
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(40))
    assert set(rows[0]) == {"id", "label", "score", "error"}
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
