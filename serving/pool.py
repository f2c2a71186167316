"""Dedicated inference processes: one single-thread ONNX Runtime session each.

The service's worker (HTTP, JSON, BentoML's adaptive batching, tokenization) hands the padded
sub-batches of each batch to these processes and awaits their logits, so every CPU runs a
single-thread session whichever worker the kernel gave the connections to; the same arrangement
as the benchmark's in-process limit (one process per CPU, one thread each).

Parent and child talk over a socket pair: length-prefixed pickles of `{input name: int64 array}`
one way and logits the other. Each child has a queue: a sub-batch goes to the child with the
fewest waiting, so a child finds its next sub-batch already in its socket when it finishes one
(no round trip through the parent's event loop), and a reader task per child hands the answers
back in order. A child ignores SIGINT and SIGTERM (its parent drains in-flight requests first)
and exits when its socket closes, so it never outlives the parent. A child that dies is
restarted; the sub-batches it held fail (a server error), the others go on.

    python -m serving.pool --model-dir DIR --fd N [--threads 1]   # the child (started by Pool)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class InferenceProcessError(RuntimeError):
    """An inference process failed or died while running a sub-batch."""


def _frame(obj: object) -> bytes:
    body = pickle.dumps(obj, protocol=5)
    return _HEADER.pack(len(body)) + body


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


class _Worker:
    """One child process and the parent's end of its socket."""

    def __init__(self, model_dir: Path, threads: int, spinning: bool, index: int) -> None:
        parent, child = socket.socketpair()
        self.index = index
        self.sock = parent
        cmd = [sys.executable, "-m", "serving.pool", "--model-dir", str(model_dir)]
        cmd += ["--fd", str(child.fileno()), "--threads", str(threads)]
        cmd += ["--spinning"] if spinning else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_PACKAGE_ROOT), *sys.path])}
        try:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                cwd=_PACKAGE_ROOT,
                env=env,
            )
        finally:
            child.close()

    def wait_ready(self, timeout: float) -> None:
        """Block until the child has loaded its session (it sends its pid), or raise."""
        self.sock.settimeout(timeout)
        try:
            header = _recv_exactly(self.sock, _HEADER.size)
            body = header and _recv_exactly(self.sock, _HEADER.unpack(header)[0])
        except TimeoutError:
            body = None
        finally:
            self.sock.settimeout(None)
        if body is None:
            self.kill()
            raise InferenceProcessError(
                f"inference process {self.index} did not start (exit code {self.proc.poll()}); "
                "its error is in the log above"
            )
        ok, detail = pickle.loads(body)
        if not ok:
            self.kill()
            raise InferenceProcessError(f"inference process {self.index}: {detail}")
        self.sock.setblocking(False)

    def start_reader(self, on_exit: Any) -> None:
        """Start answering this child's sub-batches, in the running event loop."""
        self.pending: collections.deque[asyncio.Future] = collections.deque()
        self.write_lock = asyncio.Lock()
        self.reader = asyncio.get_running_loop().create_task(self._read_answers(on_exit))

    async def submit(self, feeds: dict[str, np.ndarray]) -> asyncio.Future:
        """Queue one sub-batch on this child; the future resolves to its logits."""
        future = asyncio.get_running_loop().create_future()
        async with self.write_lock:  # frames must not interleave; answers come back in order
            self.pending.append(future)
            try:
                await asyncio.get_running_loop().sock_sendall(self.sock, _frame(feeds))
            except OSError as e:
                self.pending.remove(future)
                raise InferenceProcessError(f"inference process {self.index}: {e}") from e
        return future

    async def _read_answers(self, on_exit: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                header = await self._recv(loop, _HEADER.size)
                ok, value = pickle.loads(await self._recv(loop, _HEADER.unpack(header)[0]))
                future = self.pending.popleft()
                if future.done():  # its caller gave up (a request timeout)
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(
                        InferenceProcessError(f"inference process {self.index}: {value}")
                    )
        except (InferenceProcessError, OSError) as e:
            error = e if isinstance(e, InferenceProcessError) else InferenceProcessError(str(e))
            while self.pending:
                future = self.pending.popleft()
                if not future.done():
                    future.set_exception(error)
            on_exit(self, error)

    async def _recv(self, loop: asyncio.AbstractEventLoop, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = await loop.sock_recv_into(self.sock, view[got:])
            if k == 0:
                raise InferenceProcessError(
                    f"inference process {self.index} exited (code {self.proc.poll()})"
                )
            got += k
        return bytes(buf)

    def kill(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class InferencePool:
    """`processes` children, each with a `threads`-thread session of `model_dir/model.onnx`.

    `await pool.run(feeds)` runs one sub-batch on the child with the shortest queue (the caller
    gathers the sub-batches of a batch, so they run in parallel). Start with `start()`
    (blocking, a second or so), stop with `close()`.
    """

    def __init__(
        self,
        model_dir: str | Path,
        processes: int,
        threads: int = 1,
        spinning: bool = False,
        start_timeout_s: float = 120.0,
    ) -> None:
        if processes < 1:
            raise ValueError(f"an inference pool needs at least one process, got {processes}")
        self.model_dir = Path(model_dir)
        self.processes = processes
        self.threads = threads
        self.spinning = spinning
        self.start_timeout_s = start_timeout_s
        self._workers: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replacing: set[int] = set()
        self._closing = False
        self.restarts = 0

    def start(self) -> InferencePool:
        started = time.monotonic()
        self._workers = [self._spawn(i) for i in range(self.processes)]
        try:
            for worker in self._workers:
                worker.wait_ready(self.start_timeout_s)
        except BaseException:
            self.close()
            raise
        log.info(
            "%d inference process(es) x %d thread(s) ready in %.1f s (pids %s)",
            self.processes,
            self.threads,
            time.monotonic() - started,
            ", ".join(str(w.proc.pid) for w in self._workers),
        )
        return self

    def _spawn(self, index: int) -> _Worker:
        return _Worker(self.model_dir, self.threads, self.spinning, index)

    def _ready_workers(self) -> list[_Worker]:
        """The live children, their readers running in this event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop (tests)
            self._loop = loop
            for worker in self._workers:
                worker.start_reader(self._exited)
        ready = []
        for worker in self._workers:
            if worker.index in self._replacing:
                continue
            if worker.proc.poll() is not None:  # died, and an earlier restart failed: retry
                self._exited(
                    worker,
                    InferenceProcessError(f"inference process {worker.index} is not running"),
                )
                continue
            ready.append(worker)
        return ready

    def alive(self) -> int:
        """How many children are running."""
        return sum(1 for w in self._workers if w.proc.poll() is None)

    async def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of one sub-batch, from the child with the fewest sub-batches queued."""
        workers = self._ready_workers()
        if not workers:
            raise InferenceProcessError("no inference process is running (restarting)")
        worker = min(workers, key=lambda w: len(w.pending))
        return await (await worker.submit(feeds))

    async def run_batches(self, batches: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """Logits of several sub-batches, run in parallel over the children."""
        return list(await asyncio.gather(*(self.run(feeds) for feeds in batches)))

    def _exited(self, worker: _Worker, error: Exception) -> None:
        """A child's socket closed: replace it (in a thread: spawning blocks a second)."""
        if (
            self._closing
            or worker.index >= len(self._workers)
            or self._workers[worker.index] is not worker
            or worker.index in self._replacing
        ):
            return
        log.error("%s; restarting inference process %d", error, worker.index)
        self._replacing.add(worker.index)
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, self._replace, worker)

        def started(future: asyncio.Future) -> None:
            self._replacing.discard(worker.index)
            if future.exception() is None:
                future.result().start_reader(self._exited)
            else:
                log.error(
                    "could not restart inference process %d: %s", worker.index, future.exception()
                )

        done.add_done_callback(started)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self.restarts += 1
        new = self._spawn(worker.index)
        new.wait_ready(self.start_timeout_s)
        self._workers[worker.index] = new
        return new

    def close(self) -> None:
        self._closing = True
        for worker in self._workers:
            reader = getattr(worker, "reader", None)
            if reader is not None and not reader.done():
                reader.cancel()
            worker.kill()
        self._workers = []
        self._loop = None


def _serve(model_dir: Path, fd: int, threads: int, spinning: bool) -> int:
    """The child: load the session, then answer sub-batches until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    from serving.inference import make_session

    try:
        session = make_session(model_dir / "model.onnx", threads, spinning)
        warm = {i.name: np.ones((1, 8), np.int64) for i in session.get_inputs()}
        session.run(None, warm)  # first-call costs here, and a model that cannot run fails now
    except Exception as e:  # noqa: BLE001 - any failure is reported to the parent
        sock.sendall(_frame((False, str(e))))
        return 1
    sock.sendall(_frame((True, os.getpid())))
    while True:
        header = _recv_exactly(sock, _HEADER.size)
        body = header and _recv_exactly(sock, _HEADER.unpack(header)[0])
        if body is None:  # the parent closed its end (or exited): we are done
            return 0
        try:
            reply = (True, session.run(None, pickle.loads(body))[0])
        except Exception as e:  # noqa: BLE001 - the sub-batch fails, the process goes on
            reply = (False, f"{type(e).__name__}: {e}")
        sock.sendall(_frame(reply))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.pool", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--fd", type=int, required=True, help="this end of the socket pair")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spinning", action="store_true")
    args = parser.parse_args(argv)
    return _serve(args.model_dir, args.fd, args.threads, args.spinning)


if __name__ == "__main__":
    sys.exit(main())
