"""BentoML-specific glue: the stored-model reference, and two adjustments of the server stack
BentoML runs (its dispatcher and uvicorn) that its configuration does not offer.

Each adjustment checks that the internals it relies on are there and, if they are not (a newer
BentoML or uvicorn), leaves the stack alone and says so in a WARNING naming the versions; the
tests call the same checks, so they fail when an upgrade breaks one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from importlib import metadata
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def versions() -> str:
    found = []
    for package in ("bentoml", "uvicorn"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def missing_model_message(tag: Any) -> str:
    home = os.environ.get("BENTOML_HOME", "~/bentoml")
    return (
        f"model {tag} is not in the BentoML model store (BENTOML_HOME={home}): run `make model` "
        "to train and export one, or set MODEL_TAG to a tag listed by `bentoml models list`"
    )


class StoredModel(bentoml.models.BentoModel):
    """A `BentoModel` reference (packed into the bento by `bentoml build`) whose resolution
    fails with a how-to, instead of trying BentoCloud, when the local store lacks it."""

    def resolve(self, base_path: Any = None) -> Any:
        if self.stored is None:
            raise NotFound(missing_model_message(self.tag))
        return super().resolve(base_path)

    def check(self) -> None:
        """Fail now, naming the file, if the stored model's files are missing or corrupt:
        called when `bentoml serve` loads the service, before any worker starts (a worker
        that fails to start would be restarted over and over)."""
        from serving.inference import check_model_dir

        check_model_dir(self.resolve().path)


# ---- the dispatcher's batch wait ------------------------------------------------------------


def _not_applied(what: str, consequence: str) -> bool:
    log.warning(
        "%s not applied: BentoML's dispatcher internals changed (%s); %s",
        what,
        versions(),
        consequence,
    )
    return False


def dispatcher_optimizer() -> Any | None:
    """BentoML's dispatcher `Optimizer` class if it still has what `cap_batch_wait` needs."""
    try:
        from bentoml._internal.marshal.dispatcher import Optimizer
    except ImportError:
        return None
    probe = Optimizer(max_latency=1.0)
    if not callable(getattr(Optimizer, "trigger_refresh", None)):
        return None
    if not all(hasattr(probe, attr) for attr in ("o_stat", "wait", "o_a", "o_b")):
        return None
    return Optimizer


def cap_batch_wait(max_wait_s: float, min_wait_s: float = 0.0) -> bool:
    """Bound how long BentoML's dispatcher holds a batch open while the model is idle.

    BentoML 1.4 learns that wait from the average queueing delay of past batches. After a burst
    the average is high and self-sustaining, so a lone request then waits that long for
    minutes (measured: 12 ms before a burst, 320-410 ms after). With the cap, batches still fill
    under load (requests queue while the previous batch runs) and idle latency stays low;
    `min_wait_s` is a floor (fuller batches for that much latency when idle). Returns False,
    with a WARNING, and leaves BentoML as it is when its dispatcher internals have changed.
    """
    optimizer = dispatcher_optimizer()
    if optimizer is None:
        return _not_applied("BATCH_WAIT_MS / BATCH_MIN_WAIT_MS",
                            "lone requests may wait for batches after a burst")  # fmt: skip
    learn = getattr(optimizer, "uncapped_trigger_refresh", None) or optimizer.trigger_refresh

    def trigger_refresh(self: Any) -> None:
        learn(self)
        self.wait = min(max(self.wait, min_wait_s), max_wait_s)

    optimizer.uncapped_trigger_refresh = learn
    optimizer.trigger_refresh = trigger_refresh
    return True


def concurrent_batches(n: int) -> bool:
    """Let BentoML's dispatcher keep `n` adaptive batches in flight instead of one.

    The dispatcher runs one batch at a time: while it waits for a batch's answers, the inference
    processes that finished their share sit idle, and the next batch waits for the slowest
    sub-batch. With `n` = the inference processes, the next batch starts as soon as one is
    free (measured in docs/results.md). Returns False, with a WARNING, and leaves BentoML as
    it is when its dispatcher internals have changed; call before the service's app is built.
    """
    import inspect

    try:
        from bentoml._internal.marshal.dispatcher import CorkDispatcher, NonBlockSema
    except ImportError:
        CorkDispatcher = None
    params = inspect.signature(CorkDispatcher.__init__).parameters if CorkDispatcher else {}
    if "shared_sema" not in params:
        return _not_applied("concurrent batches", "the dispatcher runs one batch at a time")
    init = getattr(CorkDispatcher, "single_batch_init", None) or CorkDispatcher.__init__

    def __init__(self: Any, *args: Any, shared_sema: Any = None, **kwargs: Any) -> None:
        init(self, *args, shared_sema=shared_sema or NonBlockSema(n), **kwargs)

    CorkDispatcher.single_batch_init = init
    CorkDispatcher.__init__ = __init__
    return True


# ---- uvicorn: drain bound, keep-alive, request-head deadline, readiness --------------------


def uvicorn_server() -> Any | None:
    """The uvicorn `Server` running this worker (its SIGTERM handler is a bound method of it),
    if it has the attributes `bound_server` uses; else None."""
    try:
        import uvicorn
    except ImportError:
        return None
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if not isinstance(server, uvicorn.Server):
        return None
    config, state = getattr(server, "config", None), getattr(server, "server_state", None)
    if not (
        hasattr(config, "timeout_graceful_shutdown")
        and hasattr(config, "timeout_keep_alive")
        and hasattr(state, "connections")
        and hasattr(server, "should_exit")
    ):
        return None
    return server


class ServerBounds:
    """Time bounds uvicorn lacks or BentoML does not expose, set on this worker's server:

    - the drain on SIGTERM (uvicorn's `timeout_graceful_shutdown`; BentoML's default is none);
    - how long an idle keep-alive connection stays open (uvicorn's `timeout_keep_alive`);
    - how long a connection may take to send a complete request head: uvicorn has no such
      bound, so a slowloris (headers 1 byte/s) or an idle new connection is held forever; a
      watchdog answers those 408 and closes them.
    `draining` turns True as soon as shutdown starts (readiness fails at once).
    """

    def __init__(self, server: Any, header_timeout_s: float) -> None:
        self.server = server
        self.header_timeout_s = header_timeout_s
        self.closed_slow = 0
        self._task: asyncio.Task | None = None

    @classmethod
    def apply(
        cls, graceful_shutdown_s: float, keepalive_timeout_s: float, header_timeout_s: float
    ) -> ServerBounds | None:
        server = uvicorn_server()
        if server is None:
            log.warning(
                "GRACEFUL_SHUTDOWN_S / KEEPALIVE_TIMEOUT_S / HEADER_TIMEOUT_S not applied: not "
                "running under a uvicorn server this code knows (%s)",
                versions(),
            )
            return None
        server.config.timeout_graceful_shutdown = graceful_shutdown_s
        server.config.timeout_keep_alive = keepalive_timeout_s
        return cls(server, header_timeout_s)

    @property
    def draining(self) -> bool:
        return bool(self.server.should_exit)

    def start_watchdog(self) -> None:
        """Start the request-head watchdog in the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        waiting: dict[tuple[int, int], float] = {}
        interval = max(0.05, min(1.0, self.header_timeout_s / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now, seen = loop.time(), {}
            for conn in list(self.server.server_state.connections):
                cycle = getattr(conn, "cycle", None)
                if cycle is not None and not getattr(cycle, "response_complete", True):
                    continue  # a request is in progress: its body has its own deadline
                key = (id(conn), id(cycle))
                since = seen[key] = waiting.get(key, now)
                if now - since >= self.header_timeout_s:
                    self._close(conn)
                    seen.pop(key)
            waiting = seen

    def _close(self, conn: Any) -> None:
        transport = getattr(conn, "transport", None)
        if transport is None or transport.is_closing():
            return
        body = b'{"error": "request head not received within %g s (HEADER_TIMEOUT_S)"}' % (
            self.header_timeout_s
        )
        try:
            transport.write(REQUEST_TIMEOUT_408 % (len(body), body))
        finally:
            transport.close()
        self.closed_slow += 1
        log.info("closed a connection that sent no complete request head in %g s (408)",
                 self.header_timeout_s)  # fmt: skip

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


class ClientErrorTracebacks(logging.Filter):
    """Drops BentoML's ERROR tracebacks for client errors and load shedding (a 4xx is one
    WARNING line from the guard instead, 503 likewise): a flood of bad requests must not fill
    the logs, fire error alerts, or copy request data into them. Real 5xx keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        error = record.exc_info[1]
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        if isinstance(error, ValidationError):
            return False
        if isinstance(error, BentoMLException):
            code = int(getattr(error.error_code, "value", 500))
            return code >= 500 and code != 503
        return True


def quiet_client_errors() -> None:
    """Install `ClientErrorTracebacks` on the logger BentoML reports API errors with."""
    from bentoml._internal.server import http_app

    logger = getattr(http_app, "logger", None)
    if logger is None:
        log.warning("cannot quiet client-error tracebacks (%s)", versions())
        return
    if not any(isinstance(f, ClientErrorTracebacks) for f in logger.filters):
        logger.addFilter(ClientErrorTracebacks())
