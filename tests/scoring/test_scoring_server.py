"""Batch scoring against a real `bentoml serve` of the tiny model, through the real client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pandas as pd
import pytest

from scoring import client as client_module
from scoring.client import ClassifyClient
from scoring.config import ScoringConfig, ScoringError
from scoring.score import score_file, state_path
from tests.scoring.proxy import Proxy
from tests.tiny import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.server]

N_ROWS = 300
ADDED = ("label", "score", "score_negative", "score_positive", "error")
LONG_TEXT = "great " * 400  # 2400 characters: over the service's MAX_TEXT_CHARS (2000)


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rows = tiny_dataset(n, seed)
    return pd.DataFrame(
        {"id": range(n), "review": [r["text"] for r in rows], "truth": [r["label"] for r in rows]}
    )


def write(df: pd.DataFrame, path) -> None:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path, row_group_size=64)


def ctrl_c_able(cmd: list[str]) -> list[str]:
    """`cmd` with SIGINT as a terminal delivers it. A shell starts background jobs with SIGINT
    ignored, Python then installs no KeyboardInterrupt handler, and Ctrl-C would do nothing;
    the wrapper resets it and execs `cmd` in the same process (same pid)."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    return [sys.executable, "-c", reset + "os.execv(sys.argv[1], sys.argv[1:])", *cmd]


def read(path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in ADDED})
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_parquet(path)


def direct(url: str, texts: list[str]) -> list[dict]:
    """What /classify answers for `texts`, asked with plain HTTP, 64 at a time."""
    out = []
    for i in range(0, len(texts), 64):
        resp = httpx.post(f"{url}/classify", json={"texts": texts[i : i + 64]}, timeout=60)
        resp.raise_for_status()
        out += resp.json()
    return out


@pytest.fixture(scope="module")
def corpus(scoring_server):
    df = make_frame(N_ROWS)
    return df, direct(scoring_server.url, df["review"].tolist())


def config(server, src, dst, **kw) -> ScoringConfig:
    opts = {"batch_size": 16, "concurrency": 3, "chunk_size": 64, "progress": False}
    opts |= {"backoff": 0.05, **kw}
    opts.setdefault("url", server.url)
    return ScoringConfig(input=src, output=dst, text_column="review", **opts)


def assert_complete(out: pd.DataFrame, expected: list[dict], n: int) -> None:
    assert out["id"].tolist() == list(range(n)), "every row exactly once, in input order"
    # A text's scores do not depend on the batch it lands in (static activation scales).
    assert out["score"].tolist() == pytest.approx([e["score"] for e in expected], abs=1e-5)
    assert out["label"].tolist() == [e["label"] for e in expected]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_matches_direct_calls(scoring_server, corpus, tmp_path, fmt):
    df, expected = corpus
    src, dst = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    write(df, src)
    summary = score_file(config(scoring_server, src, dst, all_scores=True))
    out = read(dst)
    assert_complete(out, expected, N_ROWS)
    assert out["truth"].tolist() == df["truth"].tolist()
    assert out["score_positive"].tolist() == pytest.approx(
        [e["scores"]["positive"] for e in expected], abs=1e-5
    )
    assert out["error"].isna().all()
    assert summary.rows == N_ROWS and sum(summary.label_counts.values()) == N_ROWS
    assert not state_path(dst).exists(), "checkpoint removed once the output is final"


def test_bad_rows_are_recorded_not_fatal(scoring_server, corpus, tmp_path):
    df, expected = corpus
    df = df.copy()
    df["review"] = df["review"].astype(object)
    df.loc[3, "review"] = LONG_TEXT  # over the limit the service's API schema states
    df.loc[10, "review"] = None
    df.loc[11, "review"] = "   "
    df.loc[12, "review"] = "\u200b\u2060\ufeff"  # invisible: the service's blank rule
    df.loc[13, "review"] = 42
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(df, src)
    summary = score_file(config(scoring_server, src, dst))
    out = read(dst)
    assert out["id"].tolist() == list(range(N_ROWS))
    errors = {
        3: "text over 2000 characters",
        10: "missing text",
        11: "empty text",
        12: "empty text",
        13: "text is not a string (int)",
    }
    assert out.loc[list(errors), "error"].tolist() == list(errors.values())
    assert out.loc[list(errors), "label"].isna().all()
    good = [i for i in range(N_ROWS) if i not in errors and expected[i]["score"] > 0.51]
    assert out.loc[good, "label"].tolist() == [expected[i]["label"] for i in good]
    assert summary.skipped == {
        "text over 2000 characters": 1,
        "missing text": 1,
        "empty text": 2,
        "text is not a string (int)": 1,
    }


def test_rows_a_filter_rejects_are_isolated(scoring_server, corpus, tmp_path):
    """A 400 for a batch is narrowed down to the row that causes it; its batch mates score."""
    df, expected = corpus
    df = df.copy()
    for i in (5, 6, 200):
        df.loc[i, "review"] = f"blocked word in review {i}"
    proxy = Proxy(scoring_server.url, reject_text="blocked word")
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(df, src)
    try:
        summary = score_file(config(scoring_server, src, dst, url=proxy.url))
    finally:
        proxy.close()
    out = read(dst)
    assert out["id"].tolist() == list(range(N_ROWS))
    for i in (5, 6, 200):
        assert out.loc[i, "error"] == "rejected by the service: HTTP 400: refused by the proxy"
    assert summary.skipped == {"rejected by the service": 3}
    good = [i for i in range(N_ROWS) if i not in (5, 6, 200) and expected[i]["score"] > 0.51]
    assert out.loc[good, "label"].tolist() == [expected[i]["label"] for i in good]


@pytest.mark.parametrize("status", [403, 404, 405])
def test_refusal_mid_run_is_fatal_then_resume_completes(scoring_server, corpus, tmp_path, status):
    """A 4xx that is no verdict on the rows stops the run: no row is recorded as rejected (a
    resume would skip such rows: silent loss), and once fixed a rerun completes."""
    df, expected = corpus
    proxy = Proxy(scoring_server.url)
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(df, src)

    def refuse_after_two(ckpt):
        if ckpt.rows_done >= 128:
            proxy.refuse(status)

    try:
        with pytest.raises(ScoringError) as err:
            score_file(config(scoring_server, src, dst, url=proxy.url), on_commit=refuse_after_two)
        message = str(err.value)
        assert f"HTTP {status}" in message and "rerun the same command to resume" in message
        assert {403: "forbidden", 404: "check --url", 405: "no verdict"}[status] in message
        done = json.loads(state_path(dst).read_text())["rows_done"]
        assert 128 <= done < N_ROWS
        partial = pd.read_csv(dst.with_name(dst.name + ".partial"))
        assert len(partial) == done and partial["error"].isna().all()
        proxy.forward()
        summary = score_file(config(scoring_server, src, dst, url=proxy.url))
    finally:
        proxy.close()
    assert summary.resumed_from == done and summary.skipped == {}
    assert_complete(read(dst), expected, N_ROWS)


def test_request_counters_are_exact_across_threads(scoring_server):
    """`requests` is counted from every worker thread: with the GIL handed to another thread
    between any two bytecodes of the client, not one increment may be lost."""
    proxy = Proxy(scoring_server.url)
    client = ClassifyClient(proxy.url, retries=0)
    client.connect()

    def between_bytecodes(frame, event, arg):
        if event == "opcode":
            time.sleep(0)  # let another thread run right here
        return between_bytecodes

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != client_module.__file__:
            return None
        frame.f_trace_opcodes = True
        return between_bytecodes

    def work():
        for _ in range(4):
            client.score(["a fine film"])

    threading.settrace(tracer)
    try:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        threading.settrace(None)
        client.close()
        proxy.close()
    assert proxy.classify_requests == 1 + 8 * 4
    assert client.requests == proxy.classify_requests


def test_server_stopped_mid_run_then_rerun_completes(scoring_server, corpus, tmp_path):
    df, expected = corpus
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(df, src)
    commits = []

    def stop_after_two(ckpt):
        commits.append(ckpt.rows_done)
        if len(commits) == 2:
            scoring_server.stop()

    try:
        with pytest.raises(ScoringError, match="rerun the same command"):
            score_file(config(scoring_server, src, dst, retries=1), on_commit=stop_after_two)
        done = json.loads(state_path(dst).read_text())["rows_done"]
        assert 128 <= done < N_ROWS and not dst.exists()
    finally:
        scoring_server.start()
    summary = score_file(config(scoring_server, src, dst))
    assert summary.resumed_from == done and summary.rows_this_run == N_ROWS - done
    assert_complete(read(dst), expected, N_ROWS)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_interrupt_then_rerun_resumes(scoring_server, corpus, tmp_path, fmt):
    df, expected = corpus
    src, dst = tmp_path / "in.jsonl", tmp_path / f"out.{fmt}"
    write(df, src)

    def interrupt(ckpt):
        if ckpt.rows_done >= 128:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_file(config(scoring_server, src, dst), on_commit=interrupt)
    # A crash mid-write leaves uncommitted bytes / parts past the checkpoint: they are dropped.
    if fmt == "csv":
        with dst.with_name(dst.name + ".partial").open("a") as f:
            f.write("999,torn row")
    else:
        (dst.with_name(dst.name + ".parts") / "part-000002.parquet").write_bytes(b"torn")
    summary = score_file(config(scoring_server, src, dst))
    assert summary.resumed_from == 128
    assert_complete(read(dst), expected, N_ROWS)


def test_cli_ctrl_c_then_rerun(scoring_server, tmp_path):
    n = 3000
    df = make_frame(n, seed=1)
    src, dst = tmp_path / "in.parquet", tmp_path / "out.jsonl"
    write(df, src)
    args = [
        sys.executable,
        "-m",
        "scoring",
        str(src),
        "--text-column",
        "review",
        "-o",
        str(dst),
        "--url",
        scoring_server.url,
        "--no-progress",
    ]
    slow = ["--chunk-size", "50", "--batch-size", "2", "--concurrency", "1"]
    proc = subprocess.Popen(ctrl_c_able(args + slow), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        ckpt = state_path(dst)
        if ckpt.exists() and json.loads(ckpt.read_text() or "{}").get("rows_done", 0) >= 100:
            break
        time.sleep(0.02)
    # A second run on the same output is refused while the first one holds it.
    second = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert proc.poll() is None, "the first run was still going"
    assert second.returncode == 2, second.stderr
    assert f"another run (pid {proc.pid}) is writing" in second.stderr
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err
    done = json.loads(state_path(dst).read_text())["rows_done"]
    assert 100 <= done < n
    rerun = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed at row {done}" in rerun.stdout
    out = read(dst)
    assert out["id"].tolist() == list(range(n))
    assert out["label"].notna().all()
    assert not dst.with_name(dst.name + ".lock").exists()
