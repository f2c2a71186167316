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


def deploy_command(tmp_path: Path, **env: str) -> list[str]:
    """The arguments deploy/cloudrun.sh passes to gcloud, with `env` set."""
    fake = tmp_path / "bin" / "gcloud"
    fake.parent.mkdir(exist_ok=True)
    record = tmp_path / "argv.json"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in ("WORKERS", "MAX_BATCH_SIZE")}
    subprocess.run(
        ["bash", str(SCRIPT), IMAGE],
        env={**base, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", **env},
        check=True,
        timeout=30,
    )
    return json.loads(record.read_text())


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
