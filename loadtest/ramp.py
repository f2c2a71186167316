"""Drive a server through a ramp of concurrent Locust users (Locust as a library), one measured
step per user count, and print one JSON object per step. The benchmark runs it in a child
process, since Locust patches the interpreter with gevent on import:

    python -m loadtest.ramp --host http://127.0.0.1:3000 --users 1,4,16 --duration 15 \\
        --texts-per-request 8 --out steps.json

Each step spawns the users, lets them run `--warmup` seconds, resets the statistics, measures for
`--duration` seconds and stops them: bounded in time, loopback traffic only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ramp(
    host: str,
    users: Sequence[int],
    duration_s: float,
    warmup_s: float = 3.0,
    texts_per_request: str = "8",
    data: str = "",
    labels: str = "",
    rate_per_user: float = 0.0,
    server_pid: int | None = None,
) -> list[dict[str, Any]]:
    """One dict per user count: req/s, texts/s, latency percentiles (ms), failures, CPU use."""
    import gevent
    from locust.env import Environment

    from loadtest.bench.load import CpuMeter
    from loadtest.locustfile import ClassifyUser

    options = argparse.Namespace(
        texts_per_request=texts_per_request,
        data=data,
        labels=labels,
        rate_per_user=rate_per_user,
        api_key=os.environ.get("LOCUST_API_KEY", ""),
    )
    env = Environment(user_classes=[ClassifyUser], host=host, parsed_options=options)
    texts_ok = [0]

    def count_texts(exception=None, context=None, **_) -> None:
        if exception is None:
            texts_ok[0] += (context or {}).get("texts", 0)

    env.events.request.add_listener(count_texts)
    runner = env.create_local_runner()
    steps = []
    try:
        for n_users in users:
            runner.start(n_users, spawn_rate=min(float(n_users), 100.0))
            deadline = time.monotonic() + 30
            while runner.user_count < n_users and time.monotonic() < deadline:
                gevent.sleep(0.05)
            gevent.sleep(warmup_s)
            env.stats.reset_all()
            env.stats.clear_all()
            texts_ok[0] = 0
            meter, own0, start = CpuMeter(server_pid), _own_cpu_s(), time.monotonic()
            gevent.sleep(duration_s)
            elapsed = time.monotonic() - start
            cpu = meter.stop(_own_cpu_s() - own0)
            steps.append(
                _step(env.stats, n_users, elapsed, texts_ok[0])
                | cpu
                | {"rate_per_user": rate_per_user, "texts_per_request": texts_per_request}
            )
            runner.stop()
    finally:
        runner.quit()
    return steps


def _step(stats, n_users, elapsed, texts) -> dict[str, Any]:
    total = stats.total
    ok = total.num_requests - total.num_failures
    errors = sorted(stats.errors.values(), key=lambda e: -e.occurrences)
    return {
        "users": n_users,
        "connections": n_users,
        "seconds": round(elapsed, 2),
        "requests": total.num_requests,
        "failures": total.num_failures,
        "req_per_s": round(ok / elapsed, 2),
        "texts_per_s": round(texts / elapsed, 1),
        **{k: total.get_response_time_percentile(p) for k, p in PERCENTILES.items()},
        "mean_ms": round(total.avg_response_time, 1),
        "max_ms": total.max_response_time,
        "errors": [{"error": e.error, "count": e.occurrences} for e in errors[:5]],
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ramp", description=__doc__)
    parser.add_argument("--host", required=True, help="e.g. http://127.0.0.1:3000")
    parser.add_argument("--users", default="1,4,16", help="concurrent users per step")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per step")
    parser.add_argument("--texts-per-request", default="8")
    parser.add_argument("--data", default="", help="texts: run dir, .jsonl or corpus .csv.bz2")
    parser.add_argument("--labels", default="")
    parser.add_argument("--rate-per-user", type=float, default=0.0, help="0: closed loop")
    parser.add_argument("--out", default="", help="write the steps here (JSON) too")
    parser.add_argument("--server-pid", type=int, help="also measure this process tree's CPU")
    args = parser.parse_args(argv)
    steps = run_ramp(
        args.host,
        [int(u) for u in args.users.split(",")],
        args.duration,
        args.warmup,
        args.texts_per_request,
        args.data,
        args.labels,
        args.rate_per_user,
        args.server_pid,
    )
    for step in steps:
        print(json.dumps(step), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(steps, indent=2))
    return steps


if __name__ == "__main__":
    main()
