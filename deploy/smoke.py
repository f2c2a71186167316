"""Smoke test of a deployed service: `python -m deploy.smoke URL` (exit 0: passed, 1: failed).

Standard library only (no torch, no bentoml), so it runs anywhere a release runs. Checks, in order:
1. GET /readyz answers 200 (retried for `--wait` seconds: a new revision may still be starting);
2. POST /classify with known texts gives their known labels, in input order, scores summing to 1,
   and the answer carries an X-Request-ID;
3. a client's mistake (texts not a list) gives a 4xx with a message, not a 5xx;
4. with an API key: /classify without it is refused with 401, and with it is answered.

    python -m deploy.smoke https://v1-2-3---sentiment-service-xyz.a.run.app --api-key "$KEY"

SMOKE_API_KEY and SMOKE_ID_TOKEN are read when the flags are not given: the key goes as
X-API-Key (the service's own check), the identity token as `Authorization: Bearer` (Cloud Run's
IAM check of a private service). `--case TEXT=LABEL` replaces the known texts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

# Texts whose label any usable sentiment model gets right (the default model and the tests' tiny
# model alike: every word is in the tiny model's vocabulary).
KNOWN_CASES: dict[str, str] = {
    "A wonderful and moving film, really superb.": "positive",
    "The plot was dull and the cast was terrible.": "negative",
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Smoke:
    url: str
    api_key: str | None = None
    id_token: str | None = None
    cases: dict[str, str] = field(default_factory=lambda: dict(KNOWN_CASES))
    timeout_s: float = 30.0
    wait_s: float = 120.0

    def request(self, method: str, path: str, body=None, key: bool = True) -> Answer:
        headers = {"Accept": "application/json"}
        if self.id_token:
            headers["Authorization"] = f"Bearer {self.id_token}"
        if key and self.api_key:
            headers["X-API-Key"] = self.api_key
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url.rstrip("/") + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return Answer(
                    resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
                )
        except urllib.error.HTTPError as err:
            return Answer(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def ready(self) -> str:
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                answer = self.request("GET", "/readyz")
                if answer.status == 200:
                    return "/readyz 200"
                last = f"/readyz answered {answer.status}"
            except OSError as err:  # refused, reset, timed out: still starting
                last = f"/readyz: {err}"
            if time.monotonic() >= deadline:
                raise AssertionError(f"{last} after {self.wait_s:.0f} s")
            time.sleep(1.0)

    def known_labels(self) -> str:
        texts = list(self.cases)
        answer = self.request("POST", "/classify", {"texts": texts})
        assert answer.status == 200, f"/classify answered {answer.status}: {answer.body[:300]!r}"
        assert answer.headers.get("x-request-id"), "no X-Request-ID in the answer"
        results = answer.json()
        assert isinstance(results, list) and len(results) == len(texts), f"answer: {results!r}"
        for text, result in zip(texts, results, strict=True):
            want = self.cases[text]
            assert result["label"] == want, f"{text!r}: {result['label']!r}, expected {want!r}"
            total = sum(result["scores"].values())
            assert abs(total - 1.0) < 1e-3, f"{text!r}: scores sum to {total}"
            assert result["scores"][want] == result["score"], f"{text!r}: score is not its label's"
        return f"{len(texts)} known texts, known labels"

    def client_mistake(self) -> str:
        answer = self.request("POST", "/classify", {"texts": "not a list"})
        assert 400 <= answer.status < 500, f"a bad request answered {answer.status}, not a 4xx"
        try:
            message = answer.json().get("error") or answer.body.decode()
        except (ValueError, AttributeError):
            message = answer.body.decode(errors="replace")
        assert message.strip(), f"a bad request's {answer.status} has no message"
        return f"bad request {answer.status}: {message[:80]}"

    def api_key_enforced(self) -> str:
        answer = self.request("POST", "/classify", {"texts": list(self.cases)[:1]}, key=False)
        assert answer.status == 401, f"/classify without the API key answered {answer.status}"
        return "401 without the API key"

    def checks(self) -> list[tuple[str, Callable[[], str]]]:
        found = [
            ("ready", self.ready),
            ("known labels", self.known_labels),
            ("client mistake", self.client_mistake),
        ]
        if self.api_key:
            found.append(("api key", self.api_key_enforced))
        return found

    def run(self, out=sys.stdout) -> bool:
        passed = True
        for name, check in self.checks():
            try:
                detail = check()
                print(f"PASS {name}: {detail}", file=out)
            except (AssertionError, OSError, ValueError, KeyError, TypeError) as err:
                print(f"FAIL {name}: {err}", file=out)
                passed = False
                if name == "ready":  # nothing else can pass
                    break
        print(f"smoke test of {self.url}: {'passed' if passed else 'FAILED'}", file=out)
        return passed


def parse_case(spec: str) -> tuple[str, str]:
    text, sep, label = spec.rpartition("=")
    if not sep or not text or not label:
        raise argparse.ArgumentTypeError(f"--case TEXT=LABEL, not {spec!r}")
    return text, label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.smoke", description=__doc__.split("\n")[0]
    )
    parser.add_argument("url", help="the service's (or a tagged revision's) base URL")
    parser.add_argument("--api-key", default=os.environ.get("SMOKE_API_KEY") or None)
    parser.add_argument("--id-token", default=os.environ.get("SMOKE_ID_TOKEN") or None)
    parser.add_argument("--case", type=parse_case, action="append", metavar="TEXT=LABEL")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for /readyz")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args(argv)
    smoke = Smoke(args.url, args.api_key, args.id_token, timeout_s=args.timeout, wait_s=args.wait)
    if args.case:
        smoke.cases = dict(args.case)
    return 0 if smoke.run() else 1


if __name__ == "__main__":
    sys.exit(main())
