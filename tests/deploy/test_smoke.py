"""deploy/smoke.py, the release's smoke test, against a real `bentoml serve` of the tiny model
with an API key: it passes on the good server and fails, naming the check, on a wrong one."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from deploy.smoke import Smoke, main
from tests.service.serving import REPO_ROOT, BentoServer, free_port

pytestmark = [pytest.mark.slow, pytest.mark.server]
KEY = "smoke-test-key"


@pytest.fixture(scope="module")
def keyed_server(tiny_bento_model):
    server = BentoServer(
        "service:SentimentClassifier",
        env={"MODEL_TAG": str(tiny_bento_model), "API_KEY": KEY, "INFERENCE_PROCESSES": "1"},
    )
    try:
        server.wait_ready()
        yield server.url
    finally:
        server.stop()


class AlwaysKeyed(Smoke):
    """Sends the key even where the check leaves it out: what a server that does not enforce
    the key looks like to the smoke test."""

    def request(self, method, path, body=None, key=True):
        return super().request(method, path, body, key=True)


def run(smoke: Smoke) -> tuple[bool, str]:
    out = io.StringIO()
    return smoke.run(out), out.getvalue()


def test_passes_on_the_good_server_as_a_command_without_torch(keyed_server):
    """The command a release runs; torch and bentoml are never imported by it."""
    code = (
        "import sys, runpy; sys.argv = ['smoke', sys.argv[1], '--api-key', sys.argv[2]]\n"
        "try:\n    runpy.run_module('deploy.smoke', run_name='__main__')\n"
        "finally:\n    assert not {'torch', 'bentoml'} & set(sys.modules), 'heavy import'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, keyed_server, KEY],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in ("ready", "known labels", "client mistake", "api key"):
        assert f"PASS {check}" in proc.stdout
    assert "passed" in proc.stdout.splitlines()[-1]


def test_fails_on_an_unexpected_label(keyed_server):
    smoke = Smoke(keyed_server, api_key=KEY, cases={"A wonderful and moving film.": "negative"})
    passed, out = run(smoke)
    assert not passed
    assert "FAIL known labels" in out and "expected 'negative'" in out
    assert "PASS client mistake" in out


def test_fails_with_a_wrong_key_and_when_the_key_is_not_enforced(keyed_server):
    passed, out = run(Smoke(keyed_server, api_key="wrong"))
    assert not passed and "FAIL known labels: /classify answered 401" in out

    smoke = AlwaysKeyed(keyed_server, api_key=KEY)  # as if the server ignored the key
    passed, out = run(smoke)
    assert not passed and "FAIL api key: /classify without the API key answered 200" in out


def test_fails_when_nothing_answers():
    assert main([f"http://127.0.0.1:{free_port()}", "--wait", "1"]) == 1
