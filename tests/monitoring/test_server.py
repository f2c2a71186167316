"""Drift end to end through a real `bentoml serve`: held-out traffic raises no alarm, shifted
traffic is flagged by the right features, by the live gauges and by the report of the logs."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from monitoring.__main__ import main as monitoring_cli
from serving.drift import FEATURES, PSI_DRIFT, PSI_WARN
from tests.monitoring import shifts
from tests.monitoring.conftest import SPLIT_ROWS, read_split
from tests.service.serving import BentoServer

pytestmark = [pytest.mark.slow, pytest.mark.server]

REPO_ROOT = Path(__file__).resolve().parents[2]
# What each shifted set must move (PSI >= PSI_DRIFT) and which input features must stay put
# (PSI < PSI_WARN). Prediction features may follow an input shift: they are not asserted there.
SHIFTS = {
    "longer": (shifts.longer_texts, {"chars", "tokens", "truncated"}, {"unk_rate"}),
    "vocabulary": (shifts.other_vocabulary, {"unk_rate"}, {"chars", "tokens", "truncated"}),
    "one-label": (shifts.one_label, {"label"}, {"tokens", "truncated", "unk_rate"}),
}


def gauges(metrics: str) -> tuple[float, dict[str, float]]:
    """(texts in the drift window, {feature: PSI}) from a /metrics page."""
    window = re.search(r"^sentiment_drift_window_texts (\S+)$", metrics, re.MULTILINE)
    scores = re.findall(r'^sentiment_drift_score{feature="(\w+)"} (\S+)$', metrics, re.MULTILINE)
    return (float(window.group(1)) if window else 0.0), {f: float(v) for f, v in scores}


def settled_scores(http: httpx.Client, window: int, timeout: float = 30.0) -> dict[str, float]:
    """The drift gauges once the window is full and they stopped changing (the monitor scores
    its window at most once a second and once more when traffic pauses)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        texts, scores = gauges(http.get("/metrics").text)
        if texts == window and scores and scores == last:
            return scores
        last = scores
        time.sleep(1.5)
    raise AssertionError(f"drift gauges did not settle: window {texts}, scores {scores}")


@pytest.fixture(scope="module")
def server(monitored_model, tmp_path_factory):
    logs = tmp_path_factory.mktemp("prediction-logs")
    env = {
        "MODEL_TAG": str(monitored_model),
        "PREDICTION_LOG": "file",
        "PREDICTION_LOG_DIR": str(logs),
        "DRIFT_WINDOW": str(SPLIT_ROWS),
        "DRIFT_MIN_TEXTS": "100",
    }
    server = BentoServer("service:SentimentClassifier", env=env)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            yield http, logs
    finally:
        server.stop()


@pytest.fixture(scope="module")
def phases(server, monitored_run_dir, tmp_path_factory):
    """Send the run's test split, then each shifted set (400 texts each: one full window), and
    keep, per phase: its texts, request ids, time span and the settled live drift scores."""
    http, _ = server
    sets = {"held-out": read_split(monitored_run_dir, "test")}
    sets.update(
        {
            name: make(SPLIT_ROWS, seed)
            for seed, (name, (make, _, _)) in enumerate(SHIFTS.items(), start=11)
        }
    )
    out = {}
    for name, texts in sets.items():
        assert len(texts) == SPLIT_ROWS
        start, ids = datetime.now(UTC), []
        for i in range(0, len(texts), 16):
            ids.append(f"{name}-{i}")
            resp = http.post(
                "/classify", json={"texts": texts[i : i + 16]}, headers={"x-request-id": ids[-1]}
            )
            assert resp.status_code == 200, resp.text
        end = datetime.now(UTC)
        live = settled_scores(http, SPLIT_ROWS)
        out[name] = {"texts": texts, "ids": ids, "since": start, "until": end, "live": live}
    return out


def report(logs: Path, model, phase: dict, out: Path) -> tuple[int, dict]:
    code = monitoring_cli(
        [
            "report",
            "--logs",
            str(logs),
            "--model",
            str(model),
            "--out",
            str(out),
            "--since",
            phase["since"].isoformat(),
            "--until",
            phase["until"].isoformat(),
            "--min-texts",
            "100",
        ]
    )
    return code, json.loads((out / "report.json").read_text())


def test_held_out_traffic_raises_no_alarm_live_or_in_the_report(
    server, phases, monitored_model, tmp_path
):
    live = phases["held-out"]["live"]
    assert set(live) == set(FEATURES)
    assert max(live.values()) < PSI_WARN, live
    code, result = report(server[1], monitored_model, phases["held-out"], tmp_path)
    assert code == 0, result
    assert result["texts"] == SPLIT_ROWS and result["drifted"] == []
    psi = {f["feature"]: f["psi"] for f in result["features"]}
    assert max(psi.values()) < PSI_WARN, psi
    for feature, score in live.items():  # the same texts, the same code: the same numbers
        assert psi[feature] == pytest.approx(score, abs=0.01), feature
    md = (tmp_path / "report.md").read_text()
    assert "**no drift**" in md and "| `chars` |" in md
    for png in ("distributions.png", "drift_over_time.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", list(SHIFTS))
def test_shifted_traffic_is_flagged_by_the_right_features(
    server, phases, monitored_model, tmp_path, name
):
    _, moved, steady = SHIFTS[name]
    live = phases[name]["live"]
    assert {f for f, s in live.items() if s >= PSI_DRIFT} >= moved, live
    assert all(live[f] < PSI_WARN for f in steady), live
    code, result = report(server[1], monitored_model, phases[name], tmp_path)
    assert code == 1, result
    assert result["texts"] == SPLIT_ROWS
    assert set(result["drifted"]) >= moved
    psi = {f["feature"]: f["psi"] for f in result["features"]}
    assert all(psi[f] < PSI_WARN for f in steady), psi
    assert "**DRIFT** in" in (tmp_path / "report.md").read_text()


def test_the_log_has_one_record_per_text_with_request_ids_and_no_raw_text(server, phases):
    _, logs = server
    files = sorted(logs.iterdir())  # one per worker (WORKERS=1 here), nothing rotated yet
    assert [f.name for f in files] == ["predictions-1.jsonl"]
    content = "".join(f.read_text() for f in files)
    records = [json.loads(line) for line in content.splitlines()]
    sent = [t for phase in phases.values() for t in phase["texts"]]
    assert len(records) == len(sent)
    assert not any("text" in r for r in records)
    for text in set(sent):
        assert json.dumps(text)[1:-1] not in content  # not even inside another field
    by_id = {}
    for r in records:
        by_id.setdefault(r["request_id"], []).append(r)
    held_out = phases["held-out"]
    assert set(by_id) == {i for phase in phases.values() for i in phase["ids"]}
    first = by_id[held_out["ids"][0]]
    assert len(first) == 16
    expected = {
        hashlib.blake2b(t.encode(), digest_size=8).hexdigest() for t in held_out["texts"][:16]
    }
    assert {r["text_hash"] for r in first} == expected
    r = first[0]
    assert set(r) == {
        "ts",
        "event",
        "model",
        "request_id",
        "text_hash",
        "chars",
        "tokens",
        "truncated",
        "unk",
        "label",
        "score",
        "scores",
    }
    assert r["event"] == "prediction" and r["score"] == max(r["scores"].values())


def test_alert_rules_use_the_exported_metrics_and_the_default_thresholds(server, phases):
    http, _ = server
    metrics = http.get("/metrics").text
    rules = yaml.safe_load((REPO_ROOT / "monitoring" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for expr in exprs:
        for name in re.findall(r"\bsentiment_\w+", expr):
            assert re.search(rf"^{name}[{{ ]", metrics, re.MULTILINE), f"{name} not exported"
    thresholds = {float(x) for expr in exprs for x in re.findall(r">= ([\d.]+)", expr)}
    assert thresholds == {PSI_WARN, PSI_DRIFT}


def test_in_a_container_records_go_to_stdout_as_json_lines(monitored_model, tmp_path):
    """BentoML's Dockerfile sets BENTOML_CONTAINERIZED=true: the default sink is then stdout,
    where Cloud Logging keeps each JSON line as a structured entry (jsonPayload)."""
    env = {
        "MODEL_TAG": str(monitored_model),
        "BENTOML_CONTAINERIZED": "true",
        "PREDICTION_LOG_DIR": str(tmp_path / "unused"),
    }
    server = BentoServer("service:SentimentClassifier", env=env)
    try:
        server.wait_ready()
        texts = shifts.one_label(40, 3)
        resp = httpx.post(f"{server.url}/classify", json={"texts": texts}, timeout=30)
        assert resp.status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.output().count('"event":"prediction"') < 40:
            time.sleep(0.2)
    finally:
        server.stop()
    lines = [line for line in server.output().splitlines() if '"event":"prediction"' in line]
    records = [json.loads(line) for line in lines]  # whole lines, nothing interleaved
    assert [r["label"] for r in records] == [a["label"] for a in resp.json()]
    assert not (tmp_path / "unused").exists()
    # The report reads a Cloud Logging export of them: entries with the record as jsonPayload.
    export = tmp_path / "cloud-logging.jsonl.gz"
    with gzip.open(export, "wt") as f:
        for r in records:
            f.write(json.dumps({"jsonPayload": r, "severity": "INFO", "resource": {}}) + "\n")
    code = monitoring_cli(
        [
            "report",
            "--logs",
            str(export),
            "--model",
            str(monitored_model),
            "--out",
            str(tmp_path / "report"),
            "--min-texts",
            "40",
        ]
    )
    assert code == 1  # one label only
    result = json.loads((tmp_path / "report" / "report.json").read_text())
    assert result["texts"] == 40 and "label" in result["drifted"]
