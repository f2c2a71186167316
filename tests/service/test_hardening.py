"""Level 3: the service as an attacker and an operator meet it, over real sockets against a real
`bentoml serve`: metric cardinality, slow and idle clients, request smuggling, the API key,
request ids and timing headers, client-error logs, load shedding (429 / 503 / 504), the body
limit, corrupt model files, and a graceful shutdown under load."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.service.serving import BentoServer

pytestmark = [pytest.mark.slow, pytest.mark.server]

TARGET = "service:SentimentClassifier"
GOOD = {"texts": ["a great and moving film", "a dull and boring film"]}


def start(env: dict[str, str], tiny_bento_model) -> BentoServer:
    server = BentoServer(TARGET, env={"MODEL_TAG": str(tiny_bento_model), **env})
    server.wait_ready()
    return server


@pytest.fixture(scope="module")
def strict_server(tiny_bento_model):
    """Short time bounds, so slow clients are cut quickly; a modest concurrency limit."""
    env = {
        "HEADER_TIMEOUT_S": "2",
        "BODY_TIMEOUT_S": "2",
        "KEEPALIVE_TIMEOUT_S": "1",
        "MAX_CONCURRENCY": "32",
        "ACCESS_LOG": "true",
    }
    server = start(env, tiny_bento_model)
    yield server
    server.stop()


def connect(server, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes] | None:
    """One HTTP/1.1 response (Content-Length framed), or None if the server closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def closed(sock: socket.socket, within: float) -> bool:
    """True if the server closes the connection within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def post_request(body: bytes, extra: str = "", content_type: str = "application/json") -> bytes:
    return (
        f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


# ---- start-up -----------------------------------------------------------------------------------


def test_every_adjustment_applies_at_start_up_and_says_so_in_one_line(strict_server):
    """serving.adjustments.apply runs once per worker, in the service's start-up, and logs
    which adjustments of BentoML's and uvicorn's internals applied: all of them here."""
    lines = re.findall(
        r"BentoML/uvicorn adjustments \((.*?)\): applied (.*?); not applied (.*)",
        strict_server.output(),
    )
    assert len(lines) == 1, strict_server.output()[-3000:]
    versions, applied, left = lines[0]
    assert versions.startswith("bentoml 1.4.") and "uvicorn " in versions
    assert applied.split(", ") == [
        "batch_wait_cap",
        "concurrent_batches",
        "server_bounds",
        "quiet_client_errors",
        "openapi_info",
    ]
    assert left.strip() == "none"


# ---- metrics ----------------------------------------------------------------------------------


def test_unknown_paths_create_no_metric_series(strict_server):
    with httpx.Client(base_url=strict_server.url, timeout=30) as http:
        before = http.get("/metrics").text
        token = uuid.uuid4().hex
        for i in range(20):
            assert http.get(f"/nope-{token}-{i}").status_code == 404
            assert http.post(f"/x/{token}/{i}", json=GOOD).status_code == 404
        after = http.get("/metrics").text
    assert token not in after
    routes = set(re.findall(r'route="([^"]*)"', after))
    assert routes - set(re.findall(r'route="([^"]*)"', before)) <= {"other", "/metrics"}
    assert len(after.splitlines()) - len(before.splitlines()) < 80  # not ~40 series per path


# ---- slow, idle and many clients --------------------------------------------------------------


def test_a_slow_body_gets_408_and_is_closed(strict_server):
    sock = connect(strict_server)
    head = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sock.sendall(head + b"Content-Length: 100\r\n\r\n{")
    started = time.monotonic()
    for _ in range(3):  # a byte every half second: slower than BODY_TIMEOUT_S allows
        time.sleep(0.5)
        try:
            sock.sendall(b" ")
        except OSError:
            break
    answer = read_response(sock)
    assert answer is not None and answer[0] == 408, answer
    assert b"BODY_TIMEOUT_S" in answer[2] and answer[1]["x-request-id"]
    assert time.monotonic() - started < 6
    assert closed(sock, within=2)


def test_a_slow_request_head_gets_408_and_an_idle_connection_is_closed(strict_server):
    slow, idle = connect(strict_server), connect(strict_server)
    slow.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    answer = None
    for _ in range(12):  # one header byte per 0.5 s: the head never completes
        try:
            slow.sendall(b"X")
        except OSError:
            break
        slow.settimeout(0.5)
        try:
            data = slow.recv(65536)
            answer = data
            break
        except TimeoutError:
            continue
    assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
    assert b"HEADER_TIMEOUT_S" in answer
    assert time.monotonic() - started < 5  # HEADER_TIMEOUT_S=2, plus the watchdog's period
    assert closed(idle, within=5)  # a connection that never sent a request is closed too
    metrics = httpx.get(f"{strict_server.url}/metrics", timeout=30).text
    closed_slow = re.search(r"^sentiment_http_head_timeouts_total (\S+)$", metrics, re.MULTILINE)
    assert closed_slow and float(closed_slow.group(1)) >= 2, metrics[-2000:]


def test_an_idle_keep_alive_connection_is_closed(strict_server):
    sock = connect(strict_server)
    sock.sendall(post_request(json.dumps(GOOD).encode()))
    assert read_response(sock)[0] == 200
    started = time.monotonic()
    assert closed(sock, within=5)  # KEEPALIVE_TIMEOUT_S=1
    assert time.monotonic() - started < 4


def test_hundreds_of_slow_and_idle_clients_do_not_deny_service(strict_server):
    """150 uploads stalled mid-body and 150 connections trickling headers: more than
    MAX_CONCURRENCY (32); normal clients keep getting 200 within seconds meanwhile."""
    attackers = []
    try:
        for i in range(300):
            sock = connect(strict_server)
            if i % 2:
                sock.sendall(
                    b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{"
                )
            else:
                sock.sendall(b"POST /classify HTTP/1.1\r\nHo")
            attackers.append(sock)
        latencies = []
        with httpx.Client(base_url=strict_server.url, timeout=30) as http:
            for _ in range(20):
                started = time.monotonic()
                resp = http.post("/classify", json=GOOD)
                latencies.append(time.monotonic() - started)
                assert resp.status_code == 200, resp.text
                time.sleep(0.1)
        assert max(latencies) < 3, latencies
        # the stalled ones are cut: every attacker's connection is closed by the server
        deadline = time.monotonic() + 10
        for sock in attackers:
            assert closed(sock, within=max(0.1, deadline - time.monotonic()))
    finally:
        for sock in attackers:
            sock.close()


# ---- request smuggling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: 30\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n",
        "Content-Length: 30\r\nContent-Length: 31\r\n",
    ],
    ids=["cl-te", "te-cl", "two-cl"],
)
def test_ambiguous_framing_is_refused_and_the_connection_closed(strict_server, framing):
    body = json.dumps({"texts": ["a great film"]}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = (
        f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n"
    ).encode() + chunked
    sock = connect(strict_server)
    sock.sendall(request + post_request(body))  # a second, pipelined request must not run
    answer = read_response(sock)
    assert answer is not None and answer[0] == 400, answer
    assert closed(sock, within=3)


# ---- request ids, timing headers, client-error logs, access log --------------------------------


def test_request_ids_and_timing_headers(strict_server):
    with httpx.Client(base_url=strict_server.url, timeout=30) as http:
        started = time.monotonic()
        resp = http.post("/classify", json=GOOD, headers={"X-Request-ID": "client-id.42"})
        wall_ms = 1e3 * (time.monotonic() - started)
        assert resp.status_code == 200 and resp.headers["x-request-id"] == "client-id.42"
        total, queue, inference = (
            float(resp.headers[name])
            for name in ("x-total-time", "x-queue-time", "x-inference-time")
        )
        assert inference > 0 and queue >= 0
        assert queue + inference <= total + 0.2 <= wall_ms + 0.2  # 0.1 ms rounding each
        assert int(resp.headers["x-batch-size"]) >= 2
        for bad in ("x" * 200, "has space", b"new\xe9line"):
            resp = http.post("/classify", json=GOOD, headers={"X-Request-ID": bad})
            assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])
        errors = [
            http.post("/classify", json={"texts": []}),
            http.post("/classify", content=b"x", headers={"content-type": "text/plain"}),
            http.post("/classify", content=b'{"texts": ["' + b"a" * 2_000_000 + b'"]}'),
            http.get("/nope"),
        ]
        assert [r.status_code for r in errors] == [400, 415, 413, 404]
        assert all(r.headers.get("x-request-id") for r in errors)


def test_total_time_counts_from_the_request_head_and_queue_time_from_the_body(strict_server):
    """A body sent 0.3 s after its head: X-Total-Time includes the wait, X-Queue-Time (from
    the body's arrival to the batch's start) does not."""
    body = json.dumps(GOOD).encode()
    request = post_request(body)
    sock = connect(strict_server)
    try:
        sock.sendall(request[: -len(body)])
        time.sleep(0.3)
        sock.sendall(body)
        status, headers, _ = read_response(sock)
    finally:
        sock.close()
    assert status == 200
    total, queue = float(headers["x-total-time"]), float(headers["x-queue-time"])
    assert total >= 300 and queue < total - 250, (total, queue)


def test_a_client_error_is_one_log_line_without_the_body(strict_server):
    marker = f"SECRET{uuid.uuid4().hex}"
    with httpx.Client(base_url=strict_server.url, timeout=30) as http:
        resp = http.post("/classify", json={"texts": [marker * 200]})
    assert resp.status_code == 400 and "at most 2000 characters" in resp.text
    request_id = resp.headers["x-request-id"]
    time.sleep(0.5)
    log = strict_server.output()
    lines = [line for line in log.splitlines() if request_id in line]
    assert len(lines) == 1 and "WARNING" in lines[0] and "400" in lines[0], lines
    assert "at most 2000 characters" in lines[0]
    assert marker not in log and "Traceback" not in log


def test_access_log_lines_carry_the_request_id(strict_server):
    with httpx.Client(base_url=strict_server.url, timeout=30) as http:
        resp = http.post("/classify", json=GOOD, headers={"X-Request-ID": "access-log-check"})
    assert resp.status_code == 200
    time.sleep(0.5)
    assert re.search(r"200 POST /classify request_id=access-log-check", strict_server.output())


# ---- limits -------------------------------------------------------------------------------------


def test_a_request_within_the_documented_limits_is_never_413(strict_server):
    """64 texts of 2000 emoji, each sent as a \\u surrogate-pair escape (12 bytes a character)."""
    body = json.dumps({"texts": ["\U0001f600" * 2000] * 64}).encode()  # ensure_ascii escapes
    assert len(body) > 1_500_000
    with httpx.Client(base_url=strict_server.url, timeout=60) as http:
        resp = http.post("/classify", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 200, resp.text[:300]
        assert len(resp.json()) == 64
        upper = http.post(
            "/classify", content=json.dumps(GOOD), headers={"content-type": "APPLICATION/JSON"}
        )
        assert upper.status_code == 200, upper.text


# ---- the API key --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server(tiny_bento_model):
    server = start({"API_KEY": "s3cret-key", "INFERENCE_PROCESSES": "1"}, tiny_bento_model)
    yield server
    server.stop()


def test_api_key_is_required_where_it_should_be(keyed_server):
    with httpx.Client(base_url=keyed_server.url, timeout=30) as http:
        missing = http.post("/classify", json=GOOD)
        assert missing.status_code == 401 and "missing API key" in missing.json()["error"]
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = http.post("/classify", json=GOOD, headers={"Authorization": "Bearer nope"})
        assert (
            wrong.status_code == 401
            and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        )
        assert wrong.headers["x-request-id"]
        bearer = http.post("/classify", json=GOOD, headers={"Authorization": "Bearer s3cret-key"})
        header = http.post("/classify", json=GOOD, headers={"X-API-Key": "s3cret-key"})
        assert bearer.status_code == header.status_code == 200
        for path in ("/livez", "/readyz", "/", "/docs.json"):  # probes and the docs page: open
            assert http.get(path).status_code == 200, path
        assert http.get("/metrics").status_code == 401
        metrics = http.get("/metrics", headers={"X-API-Key": "s3cret-key"})
        assert metrics.status_code == 200 and "sentiment_http_requests_total" in metrics.text
        assert http.get("/nope").status_code == 401  # the route space is not probed without it


# ---- load shedding and time bounds: 429, 503, 504 ---------------------------------------------


def hammer(url: str, n: int, headers: dict | None = None) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n)
    with (
        httpx.Client(base_url=url, timeout=30, limits=limits) as http,
        ThreadPoolExecutor(n) as pool,
    ):
        return list(
            pool.map(lambda _: http.post("/classify", json=GOOD, headers=headers), range(n))
        )


def test_over_max_concurrency_gets_429_with_retry_after(tiny_bento_model):
    env = {"MAX_CONCURRENCY": "1", "INFERENCE_PROCESSES": "1"}
    env |= {"BATCH_WAIT_MS": "300", "BATCH_MIN_WAIT_MS": "200"}
    server = start(env, tiny_bento_model)
    try:
        for _ in range(5):  # the dispatcher learns its wait over its first batches
            responses = hammer(server.url, 16)
            codes = [r.status_code for r in responses]
            if 429 in codes:
                break
        assert set(codes) <= {200, 429} and 429 in codes and 200 in codes, codes
        shed = next(r for r in responses if r.status_code == 429)
        assert shed.headers["retry-after"] == "1" and "MAX_CONCURRENCY" in shed.text
    finally:
        server.stop()


def test_dispatcher_load_shedding_is_a_clear_503(tiny_bento_model):
    server = start({"MAX_LATENCY_MS": "1", "INFERENCE_PROCESSES": "1"}, tiny_bento_model)
    try:
        for _ in range(5):
            responses = hammer(server.url, 32)
            codes = [r.status_code for r in responses]
            if 503 in codes:
                break
        assert set(codes) <= {200, 503} and 503 in codes, codes
        shed = next(r for r in responses if r.status_code == 503)
        assert "MAX_LATENCY_MS" in shed.json()["error"] and shed.headers["retry-after"] == "1"
        assert shed.headers["x-request-id"]
        assert "Traceback" not in server.output()
    finally:
        server.stop()


def test_no_answer_in_time_is_a_504(tiny_bento_model):
    server = start({"REQUEST_TIMEOUT_S": "0.001", "INFERENCE_PROCESSES": "1"}, tiny_bento_model)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            resp = http.post("/classify", json=GOOD)
            assert resp.status_code == 504 and "REQUEST_TIMEOUT_S" in resp.text
            assert resp.headers["x-request-id"]
            assert http.get("/readyz").status_code == 200
    finally:
        server.stop()


# ---- corrupt model files ----------------------------------------------------------------------


@pytest.mark.parametrize("broken", ["model_config.json", "tokenizer.json"])
def test_a_corrupt_model_file_is_named_at_start_up(tiny_bento_model, broken):
    import bentoml

    source = bentoml.models.get(tiny_bento_model)
    with bentoml.models.create("broken-classifier", metadata={}) as model:
        for name in ("model.onnx", "tokenizer.json", "model_config.json"):
            shutil.copy(source.path_of(name), model.path_of(name))
        with open(model.path_of(broken), "w") as f:
            f.write("{ this is not JSON")
    server = BentoServer(TARGET, env={"MODEL_TAG": str(model.tag)})
    assert server.wait_exit(timeout=60) != 0
    assert re.search(
        rf"{re.escape(broken)}: not a (readable JSON file|valid tokenizer)", server.output()
    )


# ---- graceful shutdown ------------------------------------------------------------------------


def test_sigterm_under_load_drains_accepted_requests_and_exits_in_time(tiny_bento_model):
    """Every request in progress at SIGTERM is answered 200; readiness fails at once; the
    process exits well within Cloud Run's 10 s. (A request whose bytes are still in flight when
    the worker stops reading may see its connection closed unanswered, as with any server: a
    client retries those; they are the ones started less than 0.05 s before the signal.)"""
    env = {"BATCH_WAIT_MS": "300", "BATCH_MIN_WAIT_MS": "200"}  # requests spend time queued
    server = start(env, tiny_bento_model)
    results: list[tuple[float, float, object]] = []  # (sent, answered, status or error)
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    outcome: object = http.post("/classify", json=GOOD).status_code
                except httpx.HTTPError as e:  # refused once the server stopped accepting
                    outcome = type(e).__name__
                    time.sleep(0.05)
                results.append((sent, time.monotonic(), outcome))

    threads = [threading.Thread(target=client) for _ in range(16)]
    try:
        for t in threads:
            t.start()
        time.sleep(2)
        server.proc.send_signal(signal.SIGTERM)  # as Cloud Run / Kubernetes send it to PID 1
        signalled = time.monotonic()
        time.sleep(0.3)
        try:
            ready: object = httpx.get(f"{server.url}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            ready = "no answer"
        code = server.proc.wait(timeout=15)
        exited_in = time.monotonic() - signalled
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.stop()
    assert ready != 200
    in_progress = [r for r in results if r[0] < signalled < r[1]]
    lost = [
        r
        for r in in_progress
        if r[2] != 200
        and not (
            isinstance(r[2], str) and r[0] > signalled - 0.05  # bytes still in flight: retried
        )
    ]
    statuses = [r[2] for r in results if isinstance(r[2], int)]
    assert sum(1 for s in statuses if s == 200) > 50
    assert all(s == 200 for s in statuses), sorted(set(statuses))  # never a 5xx
    assert len(in_progress) >= 8 and not lost, (len(in_progress), lost[:5])
    assert code == 0 and exited_in < 10, (code, exited_in)


# ---- the body limit over a real connection, and the Host header ------------------------------


@pytest.mark.parametrize(
    "texts",
    [["a" * 8_000_000], ["a" * 4000] * 512],
    ids=["8-MB-text", "512-texts-of-4000"],
)
def test_a_client_that_sends_an_oversize_body_in_full_reads_the_413(strict_server, texts):
    """http.client sends the whole body before it reads the answer: the guard answers 413 at
    once, then reads and discards what is in flight (a lingering close, as nginx does), so the
    client gets the answer rather than a connection reset."""
    import http.client

    body = json.dumps({"texts": texts}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", strict_server.port, timeout=30)
    try:
        conn.request("POST", "/classify", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = resp.read()
    finally:
        conn.close()
    assert resp.status == 413, answer
    assert b"exceeds the limit of" in answer and b"MAX_BODY_BYTES" in answer
    assert resp.getheader("connection") == "close" and resp.getheader("x-request-id")


def test_a_client_cannot_hold_a_refused_upload_open(strict_server):
    """The lingering read after a 413 is bounded in time: a client that keeps trickling its
    oversize body is cut off within a few seconds."""
    sock = connect(strict_server)
    sock.sendall(
        post_request(b"", extra="").replace(b"Content-Length: 0", b"Content-Length: 99999999")
    )
    answer = read_response(sock)
    assert answer is not None and answer[0] == 413, answer
    started = time.monotonic()
    cut = False
    while time.monotonic() - started < 10:
        try:
            sock.sendall(b"a" * 1000)
        except OSError:
            cut = True
            break
        time.sleep(0.1)
    assert cut and time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("request_line", "host", "status"),
    [
        ("GET /livez HTTP/1.1", None, 400),
        ("GET /livez HTTP/1.1", "Host: x\r\nHost: y\r\n", 400),
        ("GET /livez HTTP/1.1", "Host: x\r\n", 200),
        ("GET /livez HTTP/1.0", None, 200),  # HTTP/1.0 needs no Host
    ],
    ids=["1.1-without-host", "1.1-two-hosts", "1.1-with-host", "1.0-without-host"],
)
def test_an_http_1_1_request_without_one_host_is_a_400(strict_server, request_line, host, status):
    """RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request that lacks a Host
    header or has more than one."""
    sock = connect(strict_server)
    try:
        sock.sendall(f"{request_line}\r\n{host or ''}\r\n".encode())
        answer = read_response(sock)
    finally:
        sock.close()
    assert answer is not None and answer[0] == status, answer
    if status == 400:
        assert b"Host" in answer[2] and answer[1]["x-request-id"]
