"""deploy/cloudrun.sh: the `gcloud run deploy` command it really runs (a stand-in `gcloud` on
PATH records its arguments), checked against the service's settings and Cloud Run's limits."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "cloudrun.sh"
CLOUD_RUN_SHUTDOWN_S = 10  # SIGTERM, then SIGKILL 10 s later
IMAGE = "europe-west1-docker.pkg.dev/p/r/sentiment-service:v1"


def gcloud_calls(
    tmp_path: Path,
    *args: str,
    service: dict | None = None,
    revisions: list | None = None,
    check: bool = True,
    **env: str,
) -> list[list[str]]:
    """Every call `deploy/cloudrun.sh ARGS` makes to gcloud, in order, with `env` set.

    The stand-in `gcloud` on PATH records its arguments; `run services describe` prints `service`
    (none: the service does not exist, exit 1), `run revisions list` prints `revisions`,
    `secrets versions access` prints a key and `auth print-identity-token` a token."""
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir(exist_ok=True)
    record = tmp_path / "calls.jsonl"
    record.unlink(missing_ok=True)
    (tmp_path / "service.json").write_text(json.dumps(service))
    (tmp_path / "revisions.json").write_text(json.dumps(revisions or []))
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\nargs = sys.argv[1:]\n"
        f"with open({str(record)!r}, 'a') as f:\n    f.write(json.dumps(args) + '\\n')\n"
        f"service = json.load(open({str(tmp_path / 'service.json')!r}))\n"
        "if args[:3] == ['run', 'services', 'describe']:\n"
        "    sys.exit(1) if service is None else print(json.dumps(service))\n"
        "elif args[:3] == ['run', 'revisions', 'list']:\n"
        f"    print(open({str(tmp_path / 'revisions.json')!r}).read())\n"
        "elif args[:3] == ['secrets', 'versions', 'access']:\n    print('the-key')\n"
        "elif args[:2] == ['auth', 'print-identity-token']:\n    print('id-token')\n"
    )
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("WORKERS", "MAX_BATCH_SIZE")}
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**base, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    calls = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    gcloud_calls.last = proc
    return calls


EXISTING = {
    "status": {"traffic": [{"revisionName": "sentiment-service-00001-abc", "percent": 100}]}
}


def deploy_command(tmp_path: Path, **env: str) -> list[str]:
    """The `gcloud run deploy` that `deploy/cloudrun.sh deploy IMAGE v1` runs, with `env` set."""
    calls = gcloud_calls(tmp_path, "deploy", IMAGE, "v1", service=EXISTING, **env)
    return next(c for c in calls if c[:2] == ["run", "deploy"])


def flags(argv: list[str]) -> dict[str, str | None]:
    """{--flag: value or None}; a flag's value is the next argument unless that is a flag."""
    found: dict[str, str | None] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            found[arg] = None if nxt is None or nxt.startswith("--") else nxt
    return found


def key_values(spec: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in spec.split(","))


def test_deploys_the_image_with_http_probes_on_readyz_and_livez(tmp_path):
    argv = deploy_command(tmp_path)
    assert argv[:3] == ["run", "deploy", "sentiment-service"]
    f = flags(argv)
    assert f["--image"] == IMAGE
    startup = key_values(f["--startup-probe"])
    assert startup["httpGet.path"] == "/readyz"  # not the default TCP probe
    assert startup["httpGet.port"] == f["--port"] == "3000"
    assert int(startup["periodSeconds"]) * int(startup["failureThreshold"]) >= 30
    liveness = key_values(f["--liveness-probe"])
    assert (liveness["httpGet.path"], liveness["httpGet.port"]) == ("/livez", "3000")
    assert "--cpu-boost" in f


def test_drains_within_cloud_runs_shutdown_window(tmp_path):
    f = flags(deploy_command(tmp_path))
    settings = ServiceSettings.from_env(key_values(f["--set-env-vars"]))
    assert settings.graceful_shutdown_s < CLOUD_RUN_SHUTDOWN_S
    assert settings.request_timeout_s <= settings.graceful_shutdown_s
    assert int(f["--timeout"]) >= settings.request_timeout_s  # the service answers 504 first


@pytest.mark.parametrize("env", [{}, {"WORKERS": "2"}, {"WORKERS": "2", "MAX_BATCH_SIZE": "16"}])
def test_concurrency_is_one_full_batch_per_worker(tmp_path, env):
    f = flags(deploy_command(tmp_path, **env))
    settings = ServiceSettings.from_env(key_values(f["--set-env-vars"]))
    concurrency = int(f["--concurrency"])
    assert concurrency == settings.max_batch_size * settings.workers
    assert concurrency <= settings.max_concurrency * settings.workers  # never a 429 from here


def test_private_by_default_and_api_key_from_secret_manager(tmp_path):
    f = flags(deploy_command(tmp_path))
    assert "--no-allow-unauthenticated" in f and "--allow-unauthenticated" not in f
    assert "API_KEY" not in f["--set-env-vars"]

    f = flags(deploy_command(tmp_path, API_KEY_SECRET="sentiment-api-key"))
    assert "--allow-unauthenticated" in f and "--no-allow-unauthenticated" not in f
    path, secret = f["--set-secrets"].split("=", 1)
    assert secret == "sentiment-api-key:latest"
    settings = ServiceSettings.from_env(key_values(f["--set-env-vars"]))
    assert str(settings.api_key_file) == path


def test_every_flag_exists_in_gcloud(tmp_path):
    """The flags are real `gcloud run deploy` flags (the installed Cloud SDK's help)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("no Cloud SDK here (gcloud) to check the flags against")
    help_text = subprocess.run(
        [gcloud, "run", "deploy", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "PAGER": "cat"},
        check=True,
    ).stdout
    help_text = re.sub(r"\x1b\[[0-9;]*m", "", help_text)
    known = set(re.findall(r"--(?:\[no-\])?[a-z][a-z0-9-]+", help_text))
    known |= {k.replace("[no-]", "") for k in known} | {k.replace("[no-]", "no-") for k in known}
    argv = deploy_command(tmp_path, API_KEY_SECRET="k", REGION="europe-west1")
    used = {a for a in argv if a.startswith("--")}
    assert used - known == set()


# The release in steps: each subcommand is one specific gcloud call.


def test_deploy_makes_a_tagged_revision_without_traffic(tmp_path):
    calls = gcloud_calls(tmp_path, "deploy", IMAGE, "v1.2.3", service=EXISTING, REGION="eu")
    assert calls[0] == [
        "run",
        "services",
        "describe",
        "sentiment-service",
        "--region",
        "eu",
        "--format",
        "json",
    ]
    f = flags(calls[1])
    assert calls[1][:3] == ["run", "deploy", "sentiment-service"] and len(calls) == 2
    assert "--no-traffic" in f and f["--tag"] == "v1-2-3"  # a revision tag: no dots
    assert (f["--image"], f["--region"]) == (IMAGE, "eu")


def test_the_first_deploy_of_a_service_takes_all_traffic(tmp_path):
    """Cloud Run refuses --no-traffic when it creates the service: nothing else could serve."""
    calls = gcloud_calls(tmp_path, "deploy", IMAGE, "v1", service=None)
    f = flags(calls[-1])
    assert "--no-traffic" not in f and f["--tag"] == "v1"


def test_the_former_one_step_deploy_still_works(tmp_path):
    calls = gcloud_calls(tmp_path, IMAGE, "--region", "eu")
    assert len(calls) == 1 and calls[0][:3] == ["run", "deploy", "sentiment-service"]
    f = flags(calls[0])
    assert "--no-traffic" not in f and "--tag" not in f and f["--region"] == "eu"


TAGGED = {
    "status": {
        "traffic": [
            {"revisionName": "sentiment-service-00001-abc", "percent": 100},
            {
                "revisionName": "sentiment-service-00002-def",
                "tag": "v2",
                "url": "https://v2---sentiment-service-xyz.a.run.app",
            },
        ]
    }
}


def test_url_is_the_tagged_revisions_own(tmp_path):
    gcloud_calls(tmp_path, "url", "v2", service=TAGGED)
    assert gcloud_calls.last.stdout.strip() == "https://v2---sentiment-service-xyz.a.run.app"
    gcloud_calls(tmp_path, "url", "v3", service=TAGGED, check=False)
    assert (
        gcloud_calls.last.returncode != 0 and "no revision tagged 'v3'" in gcloud_calls.last.stderr
    )


@pytest.mark.parametrize("secret", ["", "sentiment-api-key"])
def test_smoke_runs_the_smoke_test_on_the_tagged_url_with_the_right_credential(tmp_path, secret):
    """PYTHON stands in for the smoke test: it records what it was given."""
    fake_python = tmp_path / "bin" / "fake-python"
    fake_python.parent.mkdir(exist_ok=True)
    fake_python.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "if sys.argv[1] == '-c':\n"
        f"    os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])\n"
        "print(json.dumps([sys.argv[1:], os.environ.get('SMOKE_API_KEY'),"
        " os.environ.get('SMOKE_ID_TOKEN')]))\n"
    )
    fake_python.chmod(0o755)
    calls = gcloud_calls(
        tmp_path, "smoke", "v2", service=TAGGED, PYTHON=str(fake_python), API_KEY_SECRET=secret
    )
    argv, key, token = json.loads(gcloud_calls.last.stdout)
    assert argv == ["-m", "deploy.smoke", "https://v2---sentiment-service-xyz.a.run.app"]
    if secret:
        assert (key, token) == ("the-key", None)
        assert ["secrets", "versions", "access", "latest", "--secret", secret] in calls
    else:  # private: Cloud Run's IAM checks an identity token
        assert (key, token) == (None, "id-token")
        assert ["auth", "print-identity-token", "--audiences", argv[-1]] in calls


def test_canary_then_promote_move_traffic_to_the_tag(tmp_path):
    calls = gcloud_calls(tmp_path, "canary", "v1.2.3", "10", REGION="eu")
    assert calls == [
        [
            "run",
            "services",
            "update-traffic",
            "sentiment-service",
            "--region",
            "eu",
            "--to-tags",
            "v1-2-3=10",
        ]
    ]
    calls = gcloud_calls(tmp_path, "promote", "v1.2.3")
    assert calls == [
        ["run", "services", "update-traffic", "sentiment-service", "--to-tags", "v1-2-3=100"]
    ]
    for bad in ("0", "100", "ten"):
        assert gcloud_calls(tmp_path, "canary", "v1", bad, check=False) == []
        assert gcloud_calls.last.returncode == 2


def revision(name: str, created: str, ready: bool = True) -> dict:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"conditions": [condition]},
    }


REVISIONS = [
    revision("sentiment-service-00001-abc", "2026-01-01T00:00:00Z"),
    revision("sentiment-service-00002-def", "2026-01-02T00:00:00Z"),
    revision("sentiment-service-00003-ghi", "2026-01-03T00:00:00Z", ready=False),
    revision("sentiment-service-00004-jkl", "2026-01-04T00:00:00Z"),
    revision("sentiment-service-00005-mno", "2026-01-05T00:00:00Z"),  # deployed, no traffic
]


@pytest.mark.parametrize(
    "traffic",
    [
        [("sentiment-service-00004-jkl", 100)],  # after a promote
        [("sentiment-service-00002-def", 90), ("sentiment-service-00004-jkl", 10)],  # canary
    ],
)
def test_rollback_sends_all_traffic_to_the_revision_before_the_release(tmp_path, traffic):
    """The newest revision with traffic is the release; the newest ready one before it served
    before it (a revision that never became ready is skipped, one without traffic ignored)."""
    service = {"status": {"traffic": [{"revisionName": n, "percent": p} for n, p in traffic]}}
    calls = gcloud_calls(tmp_path, "rollback", service=service, revisions=REVISIONS, REGION="eu")
    assert calls[1] == [
        "run",
        "revisions",
        "list",
        "--service",
        "sentiment-service",
        "--region",
        "eu",
        "--format",
        "json",
    ]
    assert calls[-1] == [
        "run",
        "services",
        "update-traffic",
        "sentiment-service",
        "--region",
        "eu",
        "--to-revisions",
        "sentiment-service-00002-def=100",
    ]


def test_rollback_to_a_named_revision_and_when_there_is_none(tmp_path):
    calls = gcloud_calls(tmp_path, "rollback", "sentiment-service-00001-abc")
    assert calls == [
        [
            "run",
            "services",
            "update-traffic",
            "sentiment-service",
            "--to-revisions",
            "sentiment-service-00001-abc=100",
        ]
    ]
    only = {
        "status": {"traffic": [{"revisionName": "sentiment-service-00001-abc", "percent": 100}]}
    }
    calls = gcloud_calls(tmp_path, "rollback", service=only, revisions=REVISIONS[:1], check=False)
    assert (
        gcloud_calls.last.returncode != 0 and "no ready revision older" in gcloud_calls.last.stderr
    )
    assert not any(c[:3] == ["run", "services", "update-traffic"] for c in calls)
