"""Locust traffic for POST /classify: real Rotten Tomatoes snippets, 1- and multi-text requests.

Run headless against a served model (`make serve`) or the baseline (`python -m loadtest.baseline`):

    locust -f loadtest/locustfile.py --headless -u 16 -r 16 -t 60s --host http://127.0.0.1:3000

Options (or the LOCUST_* environment variable of the same name):
  --texts-per-request 1,8   sizes a request picks from at random ("8": always 8; "1,1,1,8":
                            three 1-text requests for one 8-text request). Default 1,8.
  --data PATH               texts: a run dir (data/*.jsonl), a .jsonl or the raw corpus .csv.bz2.
                            Default runs/latest, else .cache/rotten_tomatoes_corpus_full.csv.bz2.
  --labels a,b              labels an answer may carry. Default: the run dir's labels.
  --rate-per-user R         Poisson arrivals at R requests/s per user (open loop); default 0:
                            each user sends its next request as soon as the answer arrives.
  --api-key KEY             sent as `Authorization: Bearer KEY` (a service started with
                            API_KEY); better in the environment: LOCUST_API_KEY.
Every answer is checked: HTTP 200, one result per text, known labels, probabilities.
"""

from __future__ import annotations

import functools
import itertools
import random
import sys
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, events, task

if __package__ in (None, ""):  # `locust -f loadtest/locustfile.py`: make `loadtest` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.traffic import (
    check_answer,
    load_labels,
    load_texts,
    parse_sizes,
    sample_request,
)

_user_ids = itertools.count()


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:
    group = parser.add_argument_group("classify traffic (loadtest/locustfile.py)")
    group.add_argument(
        "--texts-per-request",
        default="1,8",
        env_var="LOCUST_TEXTS_PER_REQUEST",
        help="sizes a request picks from at random, e.g. 8 or 1,8",
    )
    group.add_argument(
        "--data", default="", env_var="LOCUST_DATA", help="run dir, .jsonl or corpus .csv.bz2"
    )
    group.add_argument(
        "--labels", default="", env_var="LOCUST_LABELS", help="e.g. negative,positive"
    )
    group.add_argument(
        "--rate-per-user",
        type=float,
        default=0.0,
        env_var="LOCUST_RATE_PER_USER",
        help="Poisson arrivals per user (requests/s); 0: closed loop, no wait",
    )
    group.add_argument(
        "--api-key",
        default="",
        env_var="LOCUST_API_KEY",
        help="API key of a service started with API_KEY (sent as Authorization: Bearer)",
    )


@functools.cache
def _texts(data: str) -> tuple[str, ...]:
    return tuple(load_texts(data or None))


@functools.cache
def _labels(data: str, labels: str) -> tuple[str, ...]:
    return tuple(s for s in labels.split(",") if s) or tuple(load_labels(data or None))


class ClassifyUser(FastHttpUser):
    """One client: sends a request, checks the answer, repeats (or waits for its next arrival)."""

    def on_start(self) -> None:
        options = self.environment.parsed_options
        data = getattr(options, "data", "") or ""
        self.texts = _texts(data)
        self.labels = _labels(data, getattr(options, "labels", "") or "")
        self.sizes = parse_sizes(getattr(options, "texts_per_request", "1,8"))
        self.rate = float(getattr(options, "rate_per_user", 0.0) or 0.0)
        key = getattr(options, "api_key", "") or ""
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.rng = random.Random(next(_user_ids))
        self.next_at = time.monotonic()
        if self.rate:  # open loop: a random first arrival, so that users do not fire in step
            self.next_at += self.rng.expovariate(self.rate)
            gevent.sleep(self.next_at - time.monotonic())

    def wait_time(self) -> float:
        if not self.rate:
            return 0.0
        self.next_at += self.rng.expovariate(self.rate)
        return max(0.0, self.next_at - time.monotonic())

    @task
    def classify(self) -> None:
        texts = sample_request(self.rng, self.texts, self.sizes)
        name = f"/classify [{len(texts)} text{'s' if len(texts) > 1 else ''}]"
        with self.client.post(
            "/classify",
            json={"texts": texts},
            headers=self.headers,
            name=name,
            context={"texts": len(texts)},
            catch_response=True,
        ) as resp:
            try:
                answer = resp.json() if resp.status_code == 200 else None
            except ValueError:
                resp.failure("answer is not JSON")
                return
            problem = check_answer(resp.status_code, answer, len(texts), self.labels)
            if problem:
                resp.failure(problem)
            else:
                resp.success()
