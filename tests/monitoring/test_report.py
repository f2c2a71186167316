"""`python -m monitoring report` on logs written here, and `python -m monitoring profile`; the
reference profile the export stage stores with the model."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from monitoring.__main__ import main
from monitoring.logs import LogError, parse_time
from serving.drift import FEATURES, PROFILE_FILE, PSI_DRIFT, Profile, feature_values
from tests.monitoring.conftest import SPLIT_ROWS

LABELS = ["negative", "positive"]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sample(rng, n, length=60.0, positive=0.5) -> dict[str, np.ndarray]:
    chars = rng.gamma(4.0, length / 4.0, n).round() + 1
    tokens = np.minimum(np.ceil(chars / 4) + 2, 64)
    return feature_values(
        chars,
        tokens,
        tokens >= 64,
        np.zeros(n),
        rng.beta(8, 1, n),
        (rng.random(n) < positive).astype(int),
    )


def records(values, start: datetime, model="sentiment-classifier:v1", step_s=1.0) -> list[dict]:
    """Prediction records as the service writes them, one per text, `step_s` apart."""
    out = []
    for i in range(len(values["chars"])):
        score = float(values["confidence"][i])
        label = LABELS[int(values["label"][i])]
        other = LABELS[1 - int(values["label"][i])]
        out.append(
            {
                "ts": (start + timedelta(seconds=i * step_s)).isoformat().replace("+00:00", "Z"),
                "event": "prediction",
                "model": model,
                "request_id": f"r{i}",
                "text_hash": f"{i:016x}",
                "chars": int(values["chars"][i]),
                "tokens": int(values["tokens"][i]),
                "truncated": bool(values["truncated"][i]),
                "unk": 0,
                "label": label,
                "score": score,
                "scores": {label: score, other: 1 - score},
            }
        )
    return out


def write(path: Path, rows: list[dict], extra_lines=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + "".join(extra_lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory) -> Path:
    values = sample(np.random.default_rng(0), 5000)
    path = tmp_path_factory.mktemp("profile") / PROFILE_FILE
    return Profile.build(values, values, LABELS).save(path)


def run(*args) -> tuple[int, dict | None, str]:
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    code = main(["report", *map(str, args)])
    report = json.loads((out / "report.json").read_text()) if out and code != 2 else None
    return code, report, (out / "report.md").read_text() if report else ""


def test_rotated_gzipped_and_cloud_logging_files_are_read_and_filtered_by_time(
    profile_path, tmp_path
):
    rng = np.random.default_rng(1)
    logs = tmp_path / "logs"
    older = records(sample(rng, 300), T0)  # 12:00 - 12:05, from the training distribution
    newer = records(sample(rng, 300, length=300), T0 + timedelta(hours=1))  # 13:00: long texts
    write(logs / "predictions-1.jsonl.1.gz", older[:150])
    write(logs / "predictions-1.jsonl", older[150:], ["not json\n", '{"event": "other"}\n'])
    export = [{"jsonPayload": r, "severity": "INFO"} for r in newer]  # Cloud Logging entries
    (logs / "cloud.json").write_text(json.dumps(export))  # as `gcloud logging read` prints
    (logs / "notes.txt").write_text("ignored: not a log file name\n")

    out = tmp_path / "before"
    code, report, md = run(
        "--logs", logs, "--profile", profile_path, "--out", out, "--until", "2026-11-01T12:30:00Z"
    )
    assert code == 0 and report["texts"] == 300 and report["drifted"] == []
    assert report["skipped"] == {
        "lines that are not JSON": 1,
        "other log entries": 1,
        "outside the time range": 300,
    }
    assert len(report["files"]) == 3 and "**no drift**" in md

    out = tmp_path / "after"
    code, report, md = run(
        "--logs", logs, "--profile", profile_path, "--out", out, "--since", "2026-11-01T12:30:00"
    )  # no zone: UTC
    assert code == 1 and report["texts"] == 300
    assert {"chars", "tokens"} <= set(report["drifted"]) and "label" not in report["drifted"]
    assert "**DRIFT** in chars, tokens" in md and "| `chars` | characters per text |" in md

    code, report, _ = run(
        "--logs",
        logs,
        "--profile",
        profile_path,
        "--out",
        tmp_path / "all",
        "--intervals",
        "6",
        "--min-texts",
        "100",
    )
    assert code == 1 and report["texts"] == 600
    chars = report["over_time"]["chars"]  # 6 groups of 100: the first 3 before, then after
    assert len(chars) == 6 and max(chars[:3]) < PSI_DRIFT < min(chars[3:])
    for png in ("distributions.png", "drift_over_time.png"):
        assert (tmp_path / "all" / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--logs", "{tmp}/nowhere"], "nowhere: no such file or directory"),
        (["--logs", "{tmp}/empty"], "empty: no log files there"),
        (
            ["--logs", "{tmp}/logs", "--min-texts", "500"],
            "300 prediction records in .*; a drift verdict needs at least 500 \\(--min-texts\\)",
        ),
        (["--logs", "{tmp}/logs", "--since", "yesterday"], "'yesterday' is not a time"),
        (["--logs", "{tmp}/logs", "--since", "1h"], "0 prediction records .* between 1h and now"),
        (["--logs", "{tmp}/logs", "--warn", "0.5"], "need 0 < --warn \\(0.5\\) <= --threshold"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(profile_path, tmp_path, capsys, args, message):
    write(tmp_path / "logs" / "p.jsonl", records(sample(np.random.default_rng(2), 300), T0))
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["report", *args, "--profile", str(profile_path), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(LogError, match=message):
        from monitoring.report import ReportConfig, build_report

        build_report(ReportConfig(logs=[args[1]], profile=str(profile_path), **_options(args[2:])))


def _options(args: list[str]) -> dict:
    names = {
        "--min-texts": ("min_texts", int),
        "--since": ("since", str),
        "--warn": ("warn", float),
    }
    return {names[k][0]: names[k][1](v) for k, v in zip(args[::2], args[1::2], strict=True)}


def test_relative_times_count_back_from_now():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_time("90m", now) == now - timedelta(minutes=90)
    assert parse_time("7d", now) == now - timedelta(days=7)
    assert parse_time("2026-11-24T10:00:00Z") == datetime(2026, 11, 24, 10, tzinfo=UTC)


def test_the_export_stores_a_profile_made_with_the_served_model(
    monitored_model, monitored_model_dir, monitored_run_dir
):
    from serving.inference import Classifier

    profile = Profile.load(monitored_model_dir / PROFILE_FILE)
    train_rows = len((monitored_run_dir / "data" / "train.jsonl").read_text().splitlines())
    assert profile.info["sources"] == {
        "inputs": {"splits": ["train", "validation"], "texts": train_rows + SPLIT_ROWS},
        "predictions": {"splits": ["validation"], "texts": SPLIT_ROWS},
    }
    assert profile.info["run_id"] == "tiny-monitored-run" and profile.labels == LABELS
    for name in FEATURES:
        assert sum(profile.features[name].proportions) == pytest.approx(1.0, abs=1e-5)
    # The label mix is the served model's answers on the validation rows.
    texts = [
        json.loads(line)["text"]
        for line in (monitored_run_dir / "data" / "validation.jsonl").read_text().splitlines()
    ]
    answers = Classifier.from_dir(monitored_model_dir, threads=1).predict(texts)
    positive = sum(a["label"] == "positive" for a in answers) / len(answers)
    assert profile.features["label"].proportions[1] == pytest.approx(positive, abs=1e-6)


def test_profile_command_rebuilds_a_models_profile_from_its_run(
    monitored_model, monitored_model_dir, monitored_run_dir, tmp_path, capsys
):
    out = tmp_path / "profile.json"
    args = [
        "profile",
        str(monitored_run_dir),
        "--model",
        str(monitored_model),
        "--output",
        str(out),
    ]
    assert main(args) == 0
    rebuilt, stored = Profile.load(out), Profile.load(monitored_model_dir / PROFILE_FILE)
    for name in ("chars", "tokens", "truncated", "unk_rate", "label"):
        assert rebuilt.features[name].edges == stored.features[name].edges
        assert rebuilt.features[name].proportions == pytest.approx(
            stored.features[name].proportions, abs=0.01
        )
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    other = tmp_path / "other-run"
    shutil.copytree(monitored_run_dir, other)
    info = json.loads((other / "run_info.json").read_text())
    (other / "run_info.json").write_text(json.dumps({**info, "data_fingerprint": "f" * 64}))
    assert (
        main(
            [
                "profile",
                str(other),
                "--model",
                str(monitored_model),
                "--output",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    assert "not the run" in capsys.readouterr().err
