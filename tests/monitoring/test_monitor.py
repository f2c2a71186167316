"""The service's prediction monitor in-process: records, privacy, rotation, stdout, back
pressure, settings. (Live drift through a real server: test_server.py.)"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from monitoring.logs import read_records
from serving import context, monitor
from serving.drift import PROFILE_FILE
from serving.monitor import PIPE_BUF, PredictionMonitor, RotatingFile, StdoutLines
from serving.settings import ServiceSettings

TEXTS = [
    "A wonderful film.",
    "Boring plot and a bland cast, really dull.",
    "The zorblax movie was great.",  # "zorblax" is not in the tiny vocabulary: [UNK]
    " ".join(["the movie was really quite boring"] * 8),  # > 32 tokens: truncated
]


@pytest.fixture(scope="module")
def clf(monitored_model_dir):
    from serving.inference import Classifier

    return Classifier.from_dir(monitored_model_dir, threads=1)


def classify(clf, texts):
    encodings = clf.encode(texts)
    return encodings, clf.predictions(clf.probabilities(encodings))


def lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("log_text", [False, True])
def test_one_record_per_text_with_its_features_and_request_id(clf, tmp_path, log_text):
    sink = RotatingFile(tmp_path / "p.jsonl", 1 << 20, 2)
    mon = PredictionMonitor(
        "sentiment-classifier:v1", clf.labels, clf.unk_id, sink, log_text=log_text
    )
    encodings, predictions = classify(clf, TEXTS)
    token = context.current.set(context.RequestInfo("req-42"))
    try:
        texts = context.register_texts(list(TEXTS))
        mon.observe(texts, encodings, predictions)
    finally:
        context.release(context.current.get())
        context.current.reset(token)
    mon.observe(TEXTS[:1], encodings[:1], predictions[:1])  # outside a request: no id
    assert mon.drain()
    mon.close()
    records = lines(tmp_path / "p.jsonl")
    assert [r["request_id"] for r in records] == ["req-42"] * 4 + [None]
    for record, text, encoding, prediction in zip(
        records, TEXTS, encodings, predictions, strict=False
    ):
        assert record["chars"] == len(text) and record["tokens"] == len(encoding.ids)
        assert record["label"] == prediction["label"]
        assert record["score"] == pytest.approx(prediction["score"], abs=1e-8)
        assert record["text_hash"] == hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        assert record["model"] == "sentiment-classifier:v1" and record["ts"].endswith("Z")
        assert record.get("text") == (text if log_text else None)
    assert [r["truncated"] for r in records[:4]] == [False, False, False, True]
    assert [r["unk"] for r in records[:4]] == [0, 0, 1, 0]
    raw = (tmp_path / "p.jsonl").read_text()
    assert ("zorblax" in raw) is log_text


def test_a_hash_key_changes_the_hash(clf):
    plain = PredictionMonitor("m:1", clf.labels, clf.unk_id)
    keyed = PredictionMonitor("m:1", clf.labels, clf.unk_id, hash_key="a-secret-key")
    assert plain.text_hash("a great film") != keyed.text_hash("a great film")
    assert keyed.text_hash("a great film") == keyed.text_hash("a great film")
    plain.close(), keyed.close()


def test_log_files_rotate_gzipped_and_stay_bounded(clf, tmp_path):
    path, max_bytes, backups = tmp_path / "logs" / "predictions-1.jsonl", 4096, 2
    texts = [f"The movie was great number {i}." for i in range(8)]
    encodings, predictions = classify(clf, texts)
    mon = PredictionMonitor("m:1", clf.labels, clf.unk_id, RotatingFile(path, max_bytes, backups))
    for _ in range(100):  # 800 records, about 250 bytes each: ~50 files' worth
        mon.observe(texts, encodings, predictions)
    assert mon.drain()
    mon.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == [path.name, f"{path.name}.1.gz", f"{path.name}.2.gz"]
    batch = len(json.dumps(lines(path)[0])) * len(texts)
    assert path.stat().st_size <= max_bytes
    for i in (1, 2):
        rotated = path.with_name(f"{path.name}.{i}.gz")
        assert rotated.stat().st_size < max_bytes / 3  # gzipped
        assert max_bytes - batch < len(gzip.decompress(rotated.read_bytes())) <= max_bytes
    kept = sum(len(lines(p)) for p in path.parent.iterdir())
    assert kept < 800 and len(read_records([path.parent])) == kept  # the report reads them all
    # A restarted worker appends to its file, counting what is there towards the limit.
    reopened = RotatingFile(path, max_bytes, backups)
    assert reopened.size == path.stat().st_size > 0
    reopened.close()


def test_stdout_writes_whole_lines_at_most_a_pipe_buffer_at_a_time(monkeypatch):
    writes = []
    monkeypatch.setattr(
        monitor.os, "write", lambda fd, data: writes.append(bytes(data)) or len(data)
    )
    data = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 300)) for i in range(200))
    StdoutLines(fd=1).write(data)
    assert b"".join(writes) == data and len(writes) > 1
    assert all(len(w) <= PIPE_BUF and w.endswith(b"\n") for w in writes)
    long_line = b'{"text": "%s"}\n' % (b"y" * (2 * PIPE_BUF))
    writes.clear()
    StdoutLines(fd=1).write(b'{"a": 1}\n' + long_line)
    assert writes == [b'{"a": 1}\n', long_line]  # a line longer than PIPE_BUF goes whole


def test_a_writer_that_falls_behind_drops_batches_instead_of_queueing_them(clf, monkeypatch):
    release = threading.Event()

    class SlowSink:
        def write(self, data):
            release.wait(10)

        flush = close = lambda self: None

    monkeypatch.setattr(monitor, "QUEUE_BATCHES", 2)
    mon = PredictionMonitor("m:1", clf.labels, clf.unk_id, SlowSink())
    encodings, predictions = classify(clf, TEXTS)
    for _ in range(6):
        mon.observe(TEXTS, encodings, predictions)
    assert mon.dropped >= 3 * len(TEXTS)
    release.set()
    assert mon.drain()
    mon.close()


def test_drift_scores_wait_for_enough_texts(clf, monitored_model_dir):
    from serving.drift import Profile

    profile = Profile.load(monitored_model_dir / PROFILE_FILE)
    mon = PredictionMonitor("m:1", clf.labels, clf.unk_id, None, profile, window=60, min_texts=40)
    texts = [f"The cast was superb and the plot was funny {i}." for i in range(30)]
    encodings, predictions = classify(clf, texts)
    mon.observe(texts, encodings, predictions)
    assert mon.drain() and mon.scores == {} and mon.window.count == 30
    mon.observe(texts, encodings, predictions)
    assert mon.drain() and mon.window.count == 60
    assert set(mon.scores) == {"chars", "tokens", "truncated", "unk_rate", "confidence", "label"}
    mon.close()


def test_a_model_without_a_profile_still_logs_but_has_no_drift(
    clf, monitored_model_dir, tmp_path, caplog
):
    old = tmp_path / "model"
    shutil.copytree(monitored_model_dir, old, ignore=shutil.ignore_patterns(PROFILE_FILE))
    settings = ServiceSettings.from_env({"PREDICTION_LOG_DIR": str(tmp_path / "logs")})
    with caplog.at_level(logging.WARNING, logger="serving.monitor"):
        mon = PredictionMonitor.from_settings(settings, SimpleNamespace(path=old, tag="m:0"), clf)
    assert "drift gauges off" in caplog.text and PROFILE_FILE in caplog.text
    assert mon.window is None and isinstance(mon.sink, RotatingFile)
    mon.close()
    off = ServiceSettings.from_env({"PREDICTION_LOG": "off"})
    assert PredictionMonitor.from_settings(off, SimpleNamespace(path=old, tag="m:0"), clf) is None


@pytest.mark.parametrize(
    ("env", "sink"),
    [
        ({}, "file"),
        ({"BENTOML_CONTAINERIZED": "true"}, "stdout"),
        ({"PREDICTION_LOG": "on", "BENTOML_CONTAINERIZED": "true"}, "stdout"),
        ({"PREDICTION_LOG": "file", "BENTOML_CONTAINERIZED": "true"}, "file"),
        ({"PREDICTION_LOG": "OFF"}, None),
        ({"PREDICTION_LOG": "0"}, None),
    ],
)
def test_prediction_log_setting_picks_the_sink(env, sink):
    assert ServiceSettings.from_env(env).prediction_log_sink == sink


def test_log_settings_defaults_and_bad_values(monkeypatch, tmp_path):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    settings = ServiceSettings.from_env({})
    assert settings.prediction_log_path == tmp_path / "predictions"
    assert not settings.prediction_log_text and settings.drift_window == 1000
    for env, message in [
        ({"PREDICTION_LOG": "maybe"}, "PREDICTION_LOG='maybe'"),
        ({"DRIFT_WINDOW": "-1"}, "DRIFT_WINDOW='-1'"),
        ({"PREDICTION_LOG_MAX_MB": "0"}, "PREDICTION_LOG_MAX_MB='0'"),
        ({"PREDICTION_LOG_HASH_KEY": "short"}, "PREDICTION_LOG_HASH_KEY"),
    ]:
        with pytest.raises(ValueError, match=message):
            ServiceSettings.from_env(env)


def test_a_failing_sink_is_reported_once_a_minute_not_once_a_batch(clf, caplog):
    class FullDisk:
        def write(self, data):
            raise OSError(28, "No space left on device")

        flush = close = lambda self: None

    mon = PredictionMonitor("m:1", clf.labels, clf.unk_id, FullDisk())
    encodings, predictions = classify(clf, TEXTS)
    with caplog.at_level(logging.ERROR, logger="serving.monitor"):
        for _ in range(5):
            mon.observe(TEXTS, encodings, predictions)
        assert mon.drain()
    mon.close()
    assert mon.failed == 5 * len(TEXTS)
    assert caplog.text.count("texts not logged or scored") == 1 and "No space left" in caplog.text
