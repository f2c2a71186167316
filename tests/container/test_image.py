"""The real image: built by docker/build.sh (`make container`), run with `docker run`.

It serves /classify, answers a bad request 400, runs as a user that cannot rewrite its code,
model or packages, holds no compiler, git or torch, installs exactly docker/requirements.lock,
and, run with the Kubernetes manifest's securityContext, mounts and limits, drains on SIGTERM
under load with every accepted request answered and exits within 10 s.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.deploy.manifests import container_env, container_spec, pod_spec
from tests.tiny import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN_S = 60  # generous: the CI machine is shared; measured 2-6 s
SHUTDOWN_WITHIN_S = 10  # Cloud Run's SIGTERM-to-SIGKILL window


def post(url: str, body: bytes, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url + "/classify", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def served(docker, image):
    """(container, seconds to /readyz 200, seconds to the first /classify 200) of the image run
    as a user would: `docker run -p 3000:3000 IMAGE` (here on a free port), 2 CPUs."""
    container = docker.start(image, "--cpus", "2")
    ready_s = container.wait_for("/readyz", timeout=READY_WITHIN_S)
    body = json.dumps({"texts": ["a great film"]}).encode()
    while post(container.url, body)[0] != 200:
        assert time.monotonic() - container.started < READY_WITHIN_S, container.logs()
        time.sleep(0.05)
    first_200_s = time.monotonic() - container.started
    print(
        f"cold start: /readyz after {ready_s:.2f} s, first /classify 200 after {first_200_s:.2f} s"
    )
    return container, ready_s, first_200_s


def test_serves_classify_and_answers_a_bad_request_400(served):
    container, ready_s, _ = served
    assert ready_s < READY_WITHIN_S
    rows = tiny_dataset(24, seed=7)
    status, body = post(container.url, json.dumps({"texts": [r["text"] for r in rows]}).encode())
    assert status == 200, body
    assert [a["label"] for a in json.loads(body)] == [r["label"] for r in rows]

    status, body = post(container.url, b'{"texts": []}')
    assert status == 400 and b"texts" in body, body
    status, body = post(container.url, b'{"texts": ["unterminated')
    assert status == 400, body


CHECK_WRITABLE = r"""
import errno, json, os, sysconfig
uid, found, attempts = os.getuid(), [], {}
site = sysconfig.get_paths()["purelib"]
roots = ["/app/bento", "/app/.venv", site]
for root in roots:
    for dirpath, dirs, files in os.walk(root):
        for path in [dirpath] + [os.path.join(dirpath, f) for f in files]:
            if os.path.islink(path):
                continue
            if os.lstat(path).st_uid == uid or os.access(path, os.W_OK):
                found.append(path)
for path in ["/", "/app"]:
    if os.access(path, os.W_OK):
        found.append(path)
model = next(os.path.join(d, f) for d, _, fs in os.walk("/app/bento/models") for f in fs
             if f == "model.onnx")
for path, mode in [("/app/bento/src/service.py", "a"), (model, "a"),
                   ("/app/bento/src/new.py", "w"), (os.path.join(site, "new.pth"), "w"),
                   (os.path.join(site, "numpy", "__init__.py"), "a")]:
    try:
        open(path, mode).close()
        attempts[path] = "written"
    except OSError as e:
        attempts[path] = errno.errorcode[e.errno]
print(json.dumps({"uid": uid, "site": site, "writable": found, "attempts": attempts}))
"""


def test_runs_as_a_user_that_cannot_rewrite_code_model_or_packages(served):
    container, _, _ = served
    server_uid = next(
        line.split()[1]
        for line in container.exec("cat", "/proc/1/status").splitlines()
        if line.startswith("Uid:")
    )
    assert server_uid != "0"
    report = json.loads(container.exec("python", "-c", CHECK_WRITABLE))
    assert str(report["uid"]) == server_uid  # `docker exec` runs as the image's user too
    assert report["site"].startswith("/app/.venv/")
    assert report["writable"] == []
    assert set(report["attempts"].values()) == {"EACCES"}, report["attempts"]


def test_holds_no_compiler_git_or_torch(docker, image):
    tools = "gcc cc c++ g++ clang ld as make git"
    out = docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        f"for t in {tools}; do command -v $t; done; "
        "python -c 'import importlib.util as u; "
        'print(*[m for m in ("torch", "transformers", "optimum") if u.find_spec(m)])\'',
    )
    assert out.split() == []


def test_installs_exactly_the_lock_file(docker, image):
    lock = {}
    for line in (ROOT / "docker" / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            lock[canonicalize_name(name)] = version
    out = docker(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        image,
        "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    installed = {canonicalize_name(k): v for k, v in json.loads(out).items()}
    assert installed == lock


def kubernetes_run_options() -> list[str]:
    """`docker run` options for what the Kubernetes manifest sets: the user, a read-only root
    with its emptyDir mounts as tmpfs, no capabilities, no privilege escalation, the CPU and
    memory limits, and the plain environment variables."""
    pod, container = pod_spec(), container_spec()
    user = pod["securityContext"]
    security = container["securityContext"]
    limits = container["resources"]["limits"]
    options = ["--user", f"{user['runAsUser']}:{user['runAsGroup']}"]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert "emptyDir" in volumes[mount["name"]], mount
        options += ["--tmpfs", mount["mountPath"]]
    if security["capabilities"]["drop"] == ["ALL"]:
        options += ["--cap-drop", "ALL"]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    memory = limits["memory"]
    assert memory.endswith("Gi"), memory
    options += ["--cpus", str(limits["cpu"]), "--memory", f"{int(memory[:-2]) * 1024}m"]
    for name, value in container_env().items():
        options += ["-e", f"{name}={value}"]
    return options


def test_with_kubernetes_settings_sigterm_under_load_drains_every_request(docker, image):
    container = docker.start(image, *kubernetes_run_options())
    container.wait_for("/readyz", timeout=READY_WITHIN_S)
    pre_stop = container_spec()["lifecycle"]["preStop"]["exec"]["command"]
    container.exec(pre_stop[0], "0")  # the preStop command exists in the image

    host, port = container.url.removeprefix("http://").split(":")
    texts = [r["text"] for r in tiny_dataset(64, seed=3)]
    body = json.dumps({"texts": texts}).encode()
    head = (
        f"POST /classify HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    slow, fast = 16, 16
    sent = threading.Barrier(slow + fast + 1)
    release = threading.Event()
    answers: dict[int, object] = {}

    def client(i: int) -> None:
        """A request accepted before SIGTERM: the slow ones send half their body, the rest
        only once shutdown has begun; the fast ones send all of it."""
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.connect()
            cut = len(body) // 2 if i < slow else len(body)
            conn.sock.sendall(head + body[:cut])
            sent.wait(timeout=30)
            if i < slow:
                release.wait(timeout=30)
                conn.sock.sendall(body[cut:])
            resp = http.client.HTTPResponse(conn.sock)
            resp.begin()
            payload = resp.read()
            answers[i] = (resp.status, len(json.loads(payload)) if resp.status == 200 else payload)
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            answers[i] = repr(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(slow + fast)]
    for t in threads:
        t.start()
    sent.wait(timeout=30)
    time.sleep(0.3)  # every request head has reached the server
    docker("kill", "--signal", "TERM", container.id)
    signalled = time.monotonic()

    # Readiness fails at once, while accepted requests are still in flight.
    ready_after_sigterm = []
    while time.monotonic() - signalled < 1.0:
        try:
            with urllib.request.urlopen(container.url + "/readyz", timeout=0.5) as resp:
                ready_after_sigterm.append(resp.status)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            ready_after_sigterm.append("refused")
        time.sleep(0.1)
    release.set()
    for t in threads:
        t.join(timeout=30)

    while container.running() and time.monotonic() - signalled < SHUTDOWN_WITHIN_S + 5:
        time.sleep(0.05)
    exited_after = time.monotonic() - signalled
    state = container.state()
    print(f"SIGTERM: exit {state['ExitCode']} after {exited_after:.2f} s; answers {answers}")
    assert answers == {i: (200, len(texts)) for i in range(slow + fast)}, container.logs()
    down = [i for i, status in enumerate(ready_after_sigterm) if status != 200]
    assert down and down[0] <= 3 and 200 not in ready_after_sigterm[down[0] :], ready_after_sigterm
    assert not state["Running"] and exited_after < SHUTDOWN_WITHIN_S, container.logs()
    assert state["ExitCode"] == 0 and not state["OOMKilled"], container.logs()
