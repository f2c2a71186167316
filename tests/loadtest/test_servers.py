"""Stopping a server stops its whole process group, children that outlive it included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from loadtest.servers import stop_process_group

# A "server" that forks a worker ignoring SIGTERM, prints the worker's pid, and exits on
# SIGTERM itself (as a LitServe server whose worker is busy in a loop may).
SERVER = """
import os, signal, sys, time
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(os.getpid(), flush=True)  # ready: SIGTERM is ignored from here on
    while True:
        time.sleep(0.05)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has ended
        return f.read().split()[2] != "Z"


def test_a_child_that_outlives_its_server_is_stopped_too():
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    child = int(proc.stdout.readline())
    try:
        assert alive(child)
        stop_process_group(proc)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.returncode == -signal.SIGTERM  # the server itself stopped gracefully
        assert not alive(child), "the worker outlived its server"
    finally:
        if alive(child):
            os.kill(child, 9)
