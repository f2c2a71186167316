"""The API key against a real `bentoml serve` started with API_KEY: missing, given, rotated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from scoring.__main__ import parse_args
from scoring.config import API_KEY_ENV, ScoringError
from scoring.score import score_file, state_path
from tests.scoring.conftest import RestartableServer
from tests.scoring.test_scoring_server import make_frame, read, write

pytestmark = [pytest.mark.slow, pytest.mark.server]

N_ROWS = 300


@pytest.fixture(scope="module")
def key_server(tiny_bento_model):
    server = RestartableServer(str(tiny_bento_model), env={"API_KEY": "key-one"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def no_key_env(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)


def args(server, src, dst, *extra) -> list[str]:
    return [
        str(src),
        "--text-column",
        "review",
        "-o",
        str(dst),
        "--url",
        server.url,
        "--no-progress",
        "--chunk-size",
        "64",
        "--batch-size",
        "16",
        "--backoff",
        "0.1",
        *extra,
    ]


def test_missing_or_wrong_key_is_fatal_at_the_probe(key_server, tmp_path, no_key_env):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(make_frame(20), src)
    with pytest.raises(
        ScoringError, match=rf"HTTP 401.*pass it with --api-key or the {API_KEY_ENV}"
    ):
        score_file(parse_args(args(key_server, src, dst)))
    with pytest.raises(ScoringError, match=r"HTTP 401.*API key was refused: check the key"):
        score_file(parse_args(args(key_server, src, dst, "--api-key", "wrong")))
    assert not dst.exists() and not state_path(dst).exists()


def test_key_from_the_environment(key_server, tmp_path, no_key_env):
    """The CLI takes the key from SENTIMENT_API_KEY: it never shows in argv (`ps`, history)."""
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(make_frame(50), src)
    env = {**os.environ, API_KEY_ENV: "key-one"}
    cmd = [sys.executable, "-m", "scoring", *args(key_server, src, dst)]
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = read(dst)
    assert out["id"].tolist() == list(range(50)) and out["label"].notna().all()


def test_key_rotated_mid_run_is_fatal_then_resume_with_new_key(key_server, tmp_path, no_key_env):
    """A 401 mid-run stops the run with the hint to pass the key; nothing is recorded as
    rejected, and the rerun with the new key completes every row exactly once."""
    df = make_frame(N_ROWS)
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(df, src)

    def rotate_after_two(ckpt):
        if ckpt.rows_done == 128:
            key_server.stop()
            key_server.start(env={"API_KEY": "key-two"})

    cfg = parse_args(args(key_server, src, dst, "--api-key", "key-one", "--retries", "8"))
    try:
        with pytest.raises(ScoringError, match=r"HTTP 401.*API key was refused.*rerun the same"):
            score_file(cfg, on_commit=rotate_after_two)
        done = json.loads(state_path(dst).read_text())["rows_done"]
        partial = pd.read_csv(dst.with_name(dst.name + ".partial"))
        assert 128 <= done < N_ROWS  # chunks answered before the rotation are committed
        assert len(partial) == done and partial["error"].isna().all()
        summary = score_file(parse_args(args(key_server, src, dst, "--api-key", "key-two")))
    finally:
        if key_server.env.get("API_KEY") != "key-one":  # leave the module's server as it was
            key_server.stop()
            key_server.start(env={"API_KEY": "key-one"})
    assert summary.resumed_from == done and summary.skipped == {}
    out = read(dst)
    assert out["id"].tolist() == list(range(N_ROWS)) and out["label"].notna().all()
