"""A small Docker helper for the image tests: the CLI, containers it starts and removes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request


def docker_cli() -> str | None:
    """A `docker` client that reaches a daemon, or None."""
    client = os.environ.get("DOCKER") or shutil.which("docker")
    if client is None:
        return None
    try:
        info = subprocess.run([client, "info"], check=False, capture_output=True, timeout=30)
        ok = info.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None
    return client if ok else None


class Docker:
    def __init__(self, client: str):
        self.client = client
        self.containers: list[str] = []

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        out = subprocess.run(
            [self.client, *args], check=False, capture_output=True, text=True, timeout=timeout
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: exit {out.returncode}\n{out.stderr}")
        return out.stdout

    def start(self, image: str, *options: str) -> Container:
        """`docker run -d` with the service port published on a free loopback port."""
        cid = self("run", "-d", "-p", "127.0.0.1::3000", *options, image).strip()
        self.containers.append(cid)
        return Container(self, cid)

    def remove_all(self) -> None:
        for cid in self.containers:
            self("rm", "-f", cid, check=False)
        self.containers.clear()


class Container:
    def __init__(self, docker: Docker, cid: str):
        self.docker, self.id = docker, cid
        self.started = time.monotonic()
        host_port = docker("port", cid, "3000/tcp").splitlines()[0].rsplit(":", 1)[1]
        self.url = f"http://127.0.0.1:{host_port}"

    def logs(self) -> str:
        out = subprocess.run(
            [self.docker.client, "logs", self.id],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout + out.stderr

    def running(self) -> bool:
        return self.state()["Running"]

    def state(self) -> dict:
        return json.loads(self.docker("inspect", "-f", "{{json .State}}", self.id))

    def wait_for(self, path: str, timeout: float = 60.0) -> float:
        """Seconds from `docker run` until GET `path` answered 200."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"container exited:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{path} not 200 after {timeout} s:\n{self.logs()}")

    def exec(self, *command: str, user: str | None = None) -> str:
        return self.docker("exec", *(["-u", user] if user else []), self.id, *command)
