"""`POST /classify` through BentoML's HTTP client: fail-fast checks, retries, bad-row narrowing."""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import dataclass

import httpx

from scoring.config import API_KEY_ENV, ScoringError
from scoring.rows import RowResult

PROBE_TEXT = "A probe sent before scoring, to check the service and read its labels."
RETRY_STATUS = {408, 429}  # client-side codes that mean "try again later"
ROW_STATUS = {400, 413, 422}  # the batch itself is bad: split it to find the bad row
# Any other 4xx says nothing about the rows (no key, wrong key, wrong URL, a proxy in the way):
# recording the batch as rejected rows would lose them silently on resume, so the run stops.
_CLIENT_PREFIX = re.compile(r"^Error making request: \d+: ")  # BentoML's client adds it
RESUME = "nothing of the unfinished chunk was recorded; rerun the same command to resume"


class Rejected(Exception):
    """The service answered 400 / 413 / 422: the batch itself is bad."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class ServiceRefused(ScoringError):
    """The service answered a 4xx that is no verdict on the rows (401, 403, 404, ...)."""


class Cancelled(Exception):
    """The run is stopping (Ctrl-C or an error elsewhere)."""


@dataclass
class ServiceInfo:
    """What the probe learned: the model's labels and the request limits of the API schema."""

    labels: list[str]
    max_items: int | None = None
    max_text_chars: int | None = None


def _error_text(body: str, limit: int = 300) -> str:
    """The service's message, unwrapped from BentoML's `{"error", "detail"}` JSON if possible."""
    body = _CLIENT_PREFIX.sub("", str(body), count=1)
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            parts = [str(data.get("error") or "")]
            for d in data.get("detail") or []:  # pydantic errors: where and what
                if isinstance(d, dict):
                    where = ".".join(map(str, d.get("loc", ())))
                    parts.append(f"{where}: {d.get('msg', '')}".strip(": "))
            body = "; ".join(p for p in parts if p) or body
    except ValueError:
        pass
    body = " ".join(str(body).split())
    return body if len(body) <= limit else body[: limit - 3] + "..."


def refusal(
    url: str, status: int, message: str, has_key: bool, request: str = "POST /classify"
) -> ServiceRefused:
    """The fatal error for a 4xx that is not about the rows, saying what to do."""
    what = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status == 401:
        hint = (
            "the API key was refused: check the key given with --api-key or "
            f"the {API_KEY_ENV} environment variable"
            if has_key
            else f"the service needs an API key: pass it with --api-key or the {API_KEY_ENV} "
            "environment variable"
        )
    elif status == 403:
        hint = "access is forbidden: the key lacks the right, or a proxy blocks this client"
    elif status == 404:
        hint = "no such route at this URL: check --url (the service or its route changed?)"
    else:
        hint = "this is no verdict on the rows, so the run stops"
    return ServiceRefused(f"service at {url} answered {what} for {request}: {hint}; {RESUME}")


def schema_limits(input_schema: dict) -> tuple[int | None, int | None]:
    """(max items, max characters per text) of /classify's `texts` in the API schema, if any."""
    texts = (input_schema.get("properties") or {}).get("texts") or {}
    items = texts.get("items") or {}
    limits = texts.get("maxItems"), items.get("maxLength")
    return tuple(v if isinstance(v, int) and v > 0 else None for v in limits)


class ClassifyClient:
    """A thread-safe caller of /classify (one `bentoml.SyncHTTPClient`, httpx pools connections).

    `requests` and `retried` count over every thread that calls `score`."""

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        stop: threading.Event | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.api_key = api_key or None
        self.stop = stop or threading.Event()
        self.client = None
        self.requests = 0
        self.retried = 0
        self._counts = threading.Lock()

    def _count(self, requests: int = 0, retried: int = 0) -> None:
        with self._counts:
            self.requests += requests
            self.retried += retried

    def connect(self) -> ServiceInfo:
        """Check /readyz, the API schema and one /classify call now, each with a clear error
        naming the URL; return the labels and the service's request limits."""
        import bentoml

        try:
            resp = httpx.get(f"{self.url}/readyz", timeout=min(self.timeout, 10.0))
        except httpx.HTTPError as e:
            raise ScoringError(
                f"cannot reach the service at {self.url} ({type(e).__name__}: {e}); is "
                "`bentoml serve` running there? (check --url)"
            ) from e
        if resp.status_code != 200:
            raise ScoringError(
                f"service at {self.url} is not ready: GET /readyz answered HTTP {resp.status_code}"
            )
        # BentoML's client starts by reading /schema.json, which needs the key too: ask first,
        # so that a missing or wrong key gets its own message.
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            resp = httpx.get(f"{self.url}/schema.json", headers=auth, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise ScoringError(f"cannot read the API schema of {self.url}: {e}") from e
        if 400 <= resp.status_code < 500:
            status, message = resp.status_code, _error_text(resp.text)
            raise refusal(self.url, status, message, bool(self.api_key), "GET /schema.json")
        try:
            # token="" rather than None: never send an unrelated BENTO_CLOUD_API_KEY along.
            self.client = bentoml.SyncHTTPClient(
                self.url, server_ready_timeout=0, timeout=self.timeout, token=self.api_key or ""
            )
        except Exception as e:
            raise ScoringError(f"cannot read the API schema of {self.url}: {e}") from e
        if "classify" not in self.client.endpoints:
            found = ", ".join(sorted(self.client.endpoints)) or "none"
            raise ScoringError(f"service at {self.url} has no /classify endpoint (found: {found})")
        try:
            (probe,) = self._call([PROBE_TEXT])
        except Rejected as e:
            raise ScoringError(f"service at {self.url} rejected a probe text: {e}") from e
        max_items, max_chars = schema_limits(self.client.endpoints["classify"].input or {})
        return ServiceInfo(list(probe["scores"]), max_items, max_chars)

    def _call(self, texts: list[str]) -> list[dict]:
        from bentoml.exceptions import BentoMLException

        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise Cancelled
            self._count(requests=1)
            try:
                out = self.client.classify(texts=texts)
            except BentoMLException as e:
                status = int(e.error_code)
                if status in ROW_STATUS:
                    raise Rejected(status, _error_text(str(e))) from e
                if 400 <= status < 500 and status not in RETRY_STATUS:
                    message = _error_text(str(e))
                    raise refusal(self.url, status, message, bool(self.api_key)) from e
                err = f"HTTP {status}: {_error_text(str(e))}"
            except httpx.TransportError as e:  # refused, reset, timed out...
                err = f"{type(e).__name__}: {e}"
            else:
                _check_answer(out, len(texts), self.url)
                return out
            if attempt == self.retries:
                raise ScoringError(
                    f"service at {self.url} failed {self.retries + 1} times in a row (last: "
                    f"{err}); rerun the same command to resume where it stopped"
                )
            self._count(retried=1)
            delay = min(30.0, self.backoff * 2**attempt) * random.uniform(0.75, 1.25)
            if self.stop.wait(delay):
                raise Cancelled
        raise AssertionError("unreachable")

    def score(self, texts: list[str]) -> list[RowResult]:
        """Predictions in input order; rows the service rejects (400 / 413 / 422) are found by
        bisection and get an error instead, so one bad row never fails its batch. Any other
        4xx (401, 403, 404, ...) raises `ServiceRefused`: it is no verdict on the rows."""
        try:
            return [RowResult(p) for p in self._call(texts)]
        except Rejected as e:
            if len(texts) == 1:
                return [RowResult(None, f"rejected by the service: {e}")]
            mid = len(texts) // 2
            return self.score(texts[:mid]) + self.score(texts[mid:])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _check_answer(out: object, n: int, url: str) -> None:
    if not isinstance(out, list) or len(out) != n:
        got = len(out) if isinstance(out, list) else type(out).__name__
        raise ScoringError(f"service at {url} broke the /classify contract: {got} for {n} texts")
    for item in out:
        if not (isinstance(item, dict) and {"label", "score", "scores"} <= item.keys()):
            raise ScoringError(
                f"service at {url} broke the /classify contract: item {str(item)[:200]}"
            )
