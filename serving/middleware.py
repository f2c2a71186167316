"""The ASGI guard in front of the API: what a service on a public URL must check before any
work is done, and what every answer must carry.

In order, for each HTTP request:
1. a request id (the client's valid `X-Request-ID`, else a new one) on every answer, errors
   included, and on the log lines about it;
2. the API key, when one is set (constant-time compare; 401 with `WWW-Authenticate`), except on
   the public paths (probes, the docs page, the web page);
3. framing: `Content-Length` together with `Transfer-Encoding` (RFC 9112 section 6.3), a
   repeated or malformed `Content-Length`, or an HTTP/1.1 request without exactly one `Host`
   (RFC 9112 section 3.2) is a 400 and the connection is closed;
4. for a POST: a JSON content type (415), the body size (413, before and while reading), and a
   deadline for the whole body to arrive (408 and close), so slow uploads hold no capacity.
   An answer given before the body is read (401, 413, 415) is followed by a lingering close,
   as nginx does: what the client is still sending is read and discarded (at most
   `LINGER_S` seconds and `linger_bytes`) so that it reads the answer instead of a connection
   reset;
5. then, and only then, a place among MAX_CONCURRENCY requests in inference (429 with
   Retry-After), and a bound on the time to answer (504);
6. timing headers as TEI sends them (`X-Total-Time`, `X-Queue-Time`, `X-Inference-Time`,
   `X-Batch-Size`), HTTP metrics by route template, and one log line per client error (rate
   limited, never the body) instead of a traceback.
It also serves `GET /metrics` (BentoML's own metrics are off: their labels are unbounded).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from serving import context, routes
from serving import metrics as model_metrics
from serving.metrics import exposition, route_label

log = logging.getLogger(__name__)

PUBLIC_PREFIXES = tuple(prefix + "/" for prefix in routes.PREFIXES)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPES = frozenset({"application/json", ""})
# Lingering close: after refusing an unread body, read and discard at most this long and this
# much (2x the body limit, at least LINGER_MIN_BYTES) before closing.
LINGER_S = 2.0
LINGER_MIN_BYTES = 16 * 1024 * 1024
CLIENT_CLOSED = 499  # nginx's code for a client that went away before its answer: logs only
ERROR_BODY_LIMIT = 4096  # bytes of an error answer kept to log its reason
# BentoML answers its dispatcher's load shedding with a generic 500-style message: say what it is.
OVERLOADED = json.dumps(
    {"error": "overloaded: the queue wait would exceed MAX_LATENCY_MS; retry later"}
).encode()


def is_public(path: str) -> bool:
    return path in routes.PUBLIC or path in routes.PREFIXES or path.startswith(PUBLIC_PREFIXES)


class RateLimitedLog:
    """At most `per_s` lines a second (bursts of `burst`); the rest are counted and reported in
    the next line that gets through, so a flood of bad requests cannot flood the logs."""

    def __init__(self, logger: logging.Logger, per_s: float = 10.0, burst: int = 20) -> None:
        self.logger, self.per_s, self.burst = logger, per_s, burst
        self.tokens, self.last, self.suppressed = float(burst), time.monotonic(), 0

    def log(self, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.per_s)
        self.last = now
        if self.tokens < 1:
            self.suppressed += 1
            return
        self.tokens -= 1
        if self.suppressed:
            msg += " (%d similar lines suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self.logger.log(level, msg, *args)


class Guard:
    """ASGI middleware; see the module docstring."""

    def __init__(
        self,
        app: Any,
        *,
        api_key: str | None,
        body_limit: int,
        body_timeout_s: float,
        request_timeout_s: float,
        max_concurrency: int,
        access_log: bool = False,
    ) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.body_limit = body_limit
        self.body_timeout_s = body_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_concurrency = max_concurrency
        self.linger_bytes = max(2 * body_limit, LINGER_MIN_BYTES)
        self.access_log = access_log
        self.in_flight = 0
        self.client_errors = RateLimitedLog(log)
        self.server_errors = RateLimitedLog(log)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw_headers = scope["headers"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        info = context.RequestInfo(context.request_id_from(headers.get("x-request-id")))
        token = context.current.set(info)
        answer = _Answer(info, scope["path"] == routes.CLASSIFY)

        async def tracked_send(message: dict) -> None:
            await send(answer.on_send(message))

        collectors = model_metrics.current()
        gauge = collectors.in_flight if collectors is not None else None
        if gauge is not None:
            gauge.inc()
        try:
            await self._handle(scope, receive, tracked_send, headers, raw_headers, info, answer)
        finally:
            context.release(info)
            context.current.reset(token)
            if gauge is not None:
                gauge.dec()
            self._account(scope, info, answer, collectors)

    async def _handle(self, scope, receive, send, headers, raw_headers, info, answer) -> None:
        path, method = scope["path"], scope["method"]
        if problem := framing_problem(raw_headers, scope.get("http_version")):
            return await reply(send, 400, problem, close=True)
        unread_body = method in BODY_METHODS  # answering before reading it: close after
        if self.api_key is not None and not is_public(path) and not self._authorized(headers):
            wrong = "authorization" in headers or "x-api-key" in headers
            challenge = 'Bearer realm="sentiment-classifier"'
            if wrong:
                challenge += ', error="invalid_token"'
            message = (
                "wrong API key" if wrong else "missing API key"
            ) + ": send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            extra = [(b"www-authenticate", challenge.encode())]
            if unread_body:
                return await self._refuse_unread(receive, send, 401, message, extra)
            return await reply(send, 401, message, extra)
        if path == routes.METRICS and method in ("GET", "HEAD"):
            body, media_type = exposition()
            return await reply_bytes(send, 200, body, media_type)
        if method not in BODY_METHODS:
            return await self.app(scope, receive, send)

        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in JSON_TYPES:
            shown = headers.get("content-type", "")[:100]
            message = f"unsupported Content-Type {shown!r}: send application/json"
            return await self._refuse_unread(receive, send, 415, message)
        too_big = f"request body exceeds the limit of {self.body_limit} bytes (MAX_BODY_BYTES)"
        length = headers.get("content-length")
        if length is not None and int(length) > self.body_limit:
            return await self._refuse_unread(receive, send, 413, too_big)
        body = await self._read_body(receive, send, too_big)
        if body is None:
            return None
        info.body_read = time.perf_counter()
        if self.in_flight >= self.max_concurrency:
            message = f"too many requests in progress (MAX_CONCURRENCY={self.max_concurrency})"
            return await reply(send, 429, message, [(b"retry-after", b"1")])
        self.in_flight += 1
        try:
            await self._answer_in_time(scope, _replay(body, receive), send, answer)
        finally:
            self.in_flight -= 1

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, credentials = headers.get("authorization", "").partition(" ")
            given = credentials.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(given.encode("latin-1"), self.api_key)

    async def _read_body(self, receive, send, too_big: str) -> bytes | None:
        """The whole body, or None after answering 408 / 413 / a client that went away."""
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                message = f"request body not received within {self.body_timeout_s:g} s"
                await reply(send, 408, message + " (BODY_TIMEOUT_S)", close=True)
                return None
            if message["type"] == "http.disconnect":
                await reply(send, CLIENT_CLOSED, "client closed the connection")  # a no-op send
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.body_limit:
                if message.get("more_body", False):
                    await self._refuse_unread(receive, send, 413, too_big)
                else:
                    await reply(send, 413, too_big, close=True)
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse_unread(self, receive, send, status, message, extra=None) -> None:
        """Answer `status` with the connection closing, then read and discard what the client
        is still sending (at most LINGER_S seconds and `linger_bytes`) before the close: a
        client that writes its whole body before reading (most do) then reads the answer,
        where closing at once with unread data would reset the connection under it."""
        await reply(send, status, message, extra, close=True, more_body=True)
        left = self.linger_bytes
        try:
            async with asyncio.timeout(LINGER_S):
                while left > 0:
                    received = await receive()
                    if received["type"] != "http.request":
                        break
                    left -= len(received.get("body", b""))
                    if not received.get("more_body", False):
                        break
        except TimeoutError:
            pass
        await send({"type": "http.response.body", "body": b""})  # ends the answer: close

    async def _answer_in_time(self, scope, receive, send, answer: _Answer) -> None:
        """Run the API; 504 if no answer has started within REQUEST_TIMEOUT_S."""
        task = asyncio.current_task()
        expired = False

        def expire() -> None:
            nonlocal expired
            if not answer.status:  # once an answer has started, let it finish
                expired = True
                task.cancel()

        async def send_unless_expired(message: dict) -> None:
            if expired:  # the API swallowed the cancellation and answers anyway: ours wins
                raise asyncio.CancelledError
            await send(message)

        timer = asyncio.get_running_loop().call_later(self.request_timeout_s, expire)
        try:
            await self.app(scope, receive, send_unless_expired)
        except asyncio.CancelledError:
            if not expired:
                raise
            task.uncancel()
            message = f"no answer within {self.request_timeout_s:g} s (REQUEST_TIMEOUT_S)"
            await reply(send, 504, message)
        finally:
            timer.cancel()

    def _account(self, scope: dict, info: context.RequestInfo, answer: _Answer, collectors) -> None:
        seconds = time.perf_counter() - info.started
        route, status = route_label(scope["path"]), answer.status or CLIENT_CLOSED
        if collectors is not None:
            collectors.observe_request(route, status, seconds)
        where = f"{scope['method']} {route}"
        if 400 <= status < 500:
            self.client_errors.log(
                logging.WARNING,
                "client error %d %s request_id=%s: %s",
                status,
                where,
                info.request_id,
                answer.reason(),
            )
        elif status >= 500:  # load shedding (503) is a warning; anything else an error
            level = logging.WARNING if status == 503 else logging.ERROR
            self.server_errors.log(
                level,
                "server error %d %s request_id=%s: %s",
                status,
                where,
                info.request_id,
                answer.reason(),
            )
        elif self.access_log:
            log.info("%d %s request_id=%s %.1f ms", status, where, info.request_id, 1e3 * seconds)


class _Answer:
    """Watches the answer going out: adds the request id and timing headers, keeps the status
    and (for errors) the start of the body, for the log line."""

    def __init__(self, info: context.RequestInfo, timed: bool) -> None:
        self.info, self.timed = info, timed
        self.status = 0
        self.error_body = b""
        self.overloaded = False

    def on_send(self, message: dict) -> dict:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
            headers.append((b"x-request-id", self.info.request_id.encode()))
            if self.status == 503:  # BentoML's dispatcher shed this request
                self.overloaded = True
                headers = [h for h in headers if h[0].lower() != b"content-length"]
                headers += [(b"content-length", b"%d" % len(OVERLOADED)), (b"retry-after", b"1")]
            if self.timed:
                headers += self._timings()
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and self.overloaded:
            message = {**message, "body": OVERLOADED if not self.error_body else b""}
            self.error_body = OVERLOADED
        elif message["type"] == "http.response.body" and self.status >= 400:
            room = ERROR_BODY_LIMIT - len(self.error_body)
            if room > 0:
                self.error_body += bytes(message.get("body", b""))[:room]
        return message

    def _timings(self) -> list[tuple[bytes, bytes]]:
        info, now = self.info, time.perf_counter()
        values = {"x-total-time": now - info.started}
        if info.batch_started is not None:
            values["x-queue-time"] = info.batch_started - (info.body_read or info.started)
            values["x-inference-time"] = info.inference_s
        out = [(k.encode(), f"{1e3 * v:.1f}".encode()) for k, v in values.items()]
        if info.batch_texts:
            out.append((b"x-batch-size", str(info.batch_texts).encode()))
        return out

    def reason(self) -> str:
        """The error's message (never the request body): `error`, plus validation details."""
        try:
            data = json.loads(self.error_body)
        except ValueError:
            return self.error_body[:200].decode("utf-8", "replace") or "(no message)"
        if not isinstance(data, dict):
            return str(data)[:300]
        reason = str(data.get("error", ""))
        for item in (data.get("detail") or [])[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []))
                reason += f"; {loc}: {item.get('msg', '')}"
        return reason[:300]


def framing_problem(raw_headers: list, http_version: str | None = "1.1") -> str | None:
    """Why the message framing is ambiguous (request smuggling) or the request lacks its one
    Host (HTTP/1.1), or None. One pass over the header names."""
    lengths, hosts, chunked, length = 0, 0, False, b""
    for name, value in raw_headers:
        name = name.lower()
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            lengths += 1
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if lengths and chunked:
        return "Content-Length and Transfer-Encoding together are not allowed (RFC 9112 6.3)"
    if lengths > 1:
        return "more than one Content-Length header"
    if lengths and not length.strip().isdigit():
        return "Content-Length is not a number"
    if hosts > 1 or (hosts == 0 and http_version == "1.1"):
        return "an HTTP/1.1 request needs exactly one Host header (RFC 9112 3.2)"
    return None


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the app the body already read, then the real channel."""
    done = False

    async def replay() -> dict:
        nonlocal done
        if done:
            return await receive()
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def reply(
    send: Any,
    status: int,
    message: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    close: bool = False,
    more_body: bool = False,
) -> None:
    """A JSON error answer `{"error": message}`; `close` ends the connection after it;
    `more_body` leaves the answer open (its whole body sent) for the caller to end."""
    body = json.dumps({"error": message}).encode()
    headers = list(extra_headers or [])
    if close:
        headers.append((b"connection", b"close"))
    await reply_bytes(send, status, body, "application/json", headers, more_body)


async def reply_bytes(
    send: Any,
    status: int,
    body: bytes,
    media_type: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    more_body: bool = False,
) -> None:
    headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": more_body})
