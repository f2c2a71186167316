"""Load generators and what each step cost the machine.

- `wrk_step`: closed-loop load at N connections from wrk (C, one thread: a few percent of a core
  at these rates) with real request bodies; the ramp's peak steps use it.
- `locust_steps`: Locust (`loadtest/ramp.py`, a child process) for the scenario steps: Poisson
  arrivals at a given rate, every answer checked against the contract.
Each step reports the share of the machine's CPUs busy, and the CPU cores used by the server
(its whole process tree) and by the load generator, so a generator that burns a core is seen.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.traffic import REPO_ROOT

WRK_SCRIPT = REPO_ROOT / "loadtest" / "wrk" / "classify.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by `pids` (those still alive)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


class CpuMeter:
    """CPU used by the machine, a server's process tree and a load generator over a step."""

    def __init__(self, server_pid: int | None) -> None:
        self.server = tree_pids(server_pid) if server_pid else []
        self.machine0, self.server0 = machine_cpu(), cpu_seconds(self.server)
        self.started = time.monotonic()

    def stop(self, generator_cpu_s: float) -> dict[str, float | None]:
        busy0, total0 = self.machine0
        busy1, total1 = machine_cpu()
        wall = time.monotonic() - self.started
        server = cpu_seconds(self.server) - self.server0 if self.server else None
        return {
            "machine_cpu_busy": round((busy1 - busy0) / (total1 - total0), 3)
            if total1 > total0
            else None,
            "server_cpu_cores": round(server / wall, 2) if server is not None else None,
            "generator_cpu_cores": round(generator_cpu_s / wall, 2),
        }


def write_bodies(texts: Sequence[str], size: int, path: Path, n: int = 2000, seed: int = 0):
    """`n` request bodies of `size` texts drawn from `texts` (their real length mix)."""
    rng = random.Random(seed + size)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps({"texts": rng.choices(texts, k=size)}) + "\n")
    return path


class MissingTool(RuntimeError):
    """A program the benchmark runs is not installed; the message names it."""


def missing_wrk() -> str | None:
    """Why wrk cannot run here (it is not on PATH), or None when it can."""
    if shutil.which("wrk") is None:
        return (
            "wrk, the benchmark's load generator, is not on PATH "
            "(apt-get install wrk; .ci/run installs it)"
        )
    return None


def require_wrk() -> None:
    """Raise `MissingTool` naming wrk when it is not installed."""
    if why := missing_wrk():
        raise MissingTool(why)


def wrk_step(
    url: str,
    connections: int,
    bodies: Path,
    size: int,
    duration_s: float,
    warmup_s: float = 0.0,
    server_pid: int | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """One closed-loop step: `connections` connections each sending its next request as soon as
    its answer arrives, for `duration_s` (after `warmup_s` unmeasured)."""
    require_wrk()
    env = {**os.environ, "BODIES": str(bodies), "API_KEY": api_key or ""}
    base = ["wrk", "-t1", f"-c{connections}", "-s", str(WRK_SCRIPT), "--timeout", "30s", url]
    if warmup_s > 0:  # wrk takes whole seconds
        subprocess.run(
            [*base[:3], f"-d{max(1, round(warmup_s))}s", *base[3:]],
            env=env,
            capture_output=True,
            timeout=warmup_s + 60,
            check=False,
        )
    _child_cpu_s()  # the warm-up's wrk is not this step's
    meter = CpuMeter(server_pid)
    proc = subprocess.run(
        [*base[:3], f"-d{max(1, round(duration_s))}s", *base[3:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=duration_s + 120,
        check=False,
    )
    cpu = meter.stop(_child_cpu_s())
    out, err = proc.stdout, proc.stderr
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err[-2000:]}")
    raw = json.loads(line[len("WRK_JSON ") :])
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    ok = raw["requests"] - raw["non_200"] - raw["read_errors"] - raw["timeouts"]
    return {
        "connections": connections,
        "texts_per_request": size,
        "seconds": round(seconds, 2),
        "requests": raw["requests"],
        "failures": raw["non_200"] + errors,
        "req_per_s": round(ok / seconds, 2),
        "texts_per_s": round(ok * size / seconds, 1),
        "p50_ms": round(raw["p50_us"] / 1e3, 1),
        "p90_ms": round(raw["p90_us"] / 1e3, 1),
        "p99_ms": round(raw["p99_us"] / 1e3, 1),
        "max_ms": round(raw["max_us"] / 1e3, 1),
        "generator": "wrk",
        **cpu,
    }


_children_cpu = [0.0]


def _child_cpu_s() -> float:
    """CPU seconds used by this process's waited-for children since the last call."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    spent, _children_cpu[0] = total - _children_cpu[0], total
    return spent


def locust_steps(
    url: str,
    users: Sequence[int],
    duration_s: float,
    warmup_s: float,
    size: int,
    labels: Sequence[str],
    data: Path | None,
    rate_per_user: float = 0.0,
    server_pid: int | None = None,
    api_key: str | None = None,
) -> list[dict[str, Any]]:
    """`python -m loadtest.ramp` in a child process (Locust patches its interpreter)."""
    with tempfile.TemporaryDirectory(prefix="loadtest-ramp-") as tmp:
        out = Path(tmp) / "steps.json"
        cmd = [
            sys.executable,
            "-m",
            "loadtest.ramp",
            *("--host", url, "--users", ",".join(map(str, users))),
            *("--duration", str(duration_s), "--warmup", str(warmup_s)),
            *("--texts-per-request", str(size), "--labels", ",".join(labels)),
            *("--rate-per-user", str(rate_per_user), "--out", str(out)),
            *(("--data", str(data)) if data else ()),
        ]
        if server_pid:
            cmd += ["--server-pid", str(server_pid)]
        env = {**os.environ, **({"LOCUST_API_KEY": api_key} if api_key else {})}
        budget = len(users) * (duration_s + warmup_s + 40) + 60
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=budget,
            check=False,
        )
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"load ramp failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        steps = json.loads(out.read_text())
    _child_cpu_s()  # Locust's own CPU is in its steps; do not count it against the next wrk
    for step in steps:
        step["generator"] = "locust"
    return steps
