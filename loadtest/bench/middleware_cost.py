"""What the guard middleware (request id, timing headers, limits, API key, metrics) costs a
request, in-process: the same 1-text POST /classify through `serving.middleware.Guard` around a
trivial ASGI app, against the trivial app alone, best of 3 rounds of N calls. Runs in a child
process with Prometheus' multiprocess mode on, as in the service:

    python -m loadtest.bench.middleware_cost
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

BODY = json.dumps({"texts": ["A moving, beautifully acted film."]}).encode()
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/classify",
    "headers": [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"authorization", b"Bearer bench-key"),
    ],
}
ANSWER = json.dumps([{"label": "positive", "score": 0.9, "scores": {}}]).encode()


async def _app(scope: dict, receive: Any, send: Any) -> None:
    message = await receive()
    assert message["body"] == BODY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


async def _receive() -> dict:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def _send(message: dict) -> None:
    return None


async def _time(app: Any, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(n):
            await app(dict(SCOPE), _receive, _send)
        best = min(best, time.perf_counter() - started)
    return best / n


def measure_guard_cost(n: int = 5000) -> dict[str, float]:
    """`guard_cost` in a child process with PROMETHEUS_MULTIPROC_DIR set (as in a worker)."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="prometheus-") as tmp:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tmp}
        out = subprocess.run(
            [sys.executable, "-m", "loadtest.bench.middleware_cost", str(n)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def guard_cost(n: int = 5000) -> dict[str, float]:
    """Microseconds per 1-text request: bare app, behind the guard, and with the API key on."""
    from serving import metrics
    from serving.middleware import Guard

    metrics.setup(["negative", "positive"], 32)  # the guard records each request, as served

    options = {
        "body_limit": 1 << 20,
        "body_timeout_s": 10.0,
        "request_timeout_s": 10.0,
        "max_concurrency": 128,
    }

    async def run() -> dict[str, float]:
        bare = await _time(_app, n)
        guarded = await _time(Guard(_app, api_key=None, **options), n)
        keyed = await _time(Guard(_app, api_key="bench-key", **options), n)
        return {
            "bare_app_us": round(bare * 1e6, 1),
            "guard_us": round((guarded - bare) * 1e6, 1),
            "guard_with_api_key_us": round((keyed - bare) * 1e6, 1),
        }

    return asyncio.run(run())


if __name__ == "__main__":
    import sys

    print(json.dumps(guard_cost(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)))
