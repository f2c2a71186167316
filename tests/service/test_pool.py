"""The inference processes: same answers as in-process inference, and they survive a crash."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest

from serving.pool import InferencePool, InferenceProcessError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pool(tiny_model_path):
    started = InferencePool(tiny_model_path, processes=2).start()
    yield started
    started.close()


def test_pool_gives_the_answers_of_in_process_inference(pool, classifier, review_rows):
    texts = [r["text"] for r in review_rows]
    encodings = classifier.encode(texts)
    chunks = classifier.plan(encodings, parts=2)
    assert len(chunks) >= 2
    feeds = [classifier.feeds(encodings, c) for c in chunks]
    logits = asyncio.run(pool.run_batches(feeds))
    local = [classifier.run(f) for f in feeds]
    for a, b in zip(logits, local, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # same model, same inputs
    assert pool.alive() == 2


def test_a_dead_process_fails_its_sub_batch_and_is_replaced(pool, classifier):
    feeds = classifier.feeds(classifier.encode(["a great film"]), np.array([0]))

    async def scenario():
        await pool.run(feeds)  # the readers run in this event loop
        victim = pool._workers[0]
        os.kill(victim.proc.pid, signal.SIGSTOP)  # it holds the next sub-batch unanswered
        in_flight = await victim.submit(feeds)
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        later = [pool.run(feeds) for _ in range(4)]
        outcomes = await asyncio.gather(in_flight, *later, return_exceptions=True)
        return victim, outcomes

    async def restarted() -> None:
        for _ in range(600):  # the restart runs in a thread, beside the event loop
            if pool.restarts >= 1 and not pool._replacing:
                break
            await asyncio.sleep(0.05)
        await pool.run_batches([feeds] * 4)  # and every process answers again

    victim, outcomes = asyncio.run(scenario())
    # exactly the sub-batch the dead process held fails; the later ones go to the live one
    assert isinstance(outcomes[0], InferenceProcessError), outcomes
    assert all(isinstance(o, np.ndarray) for o in outcomes[1:]), outcomes
    asyncio.run(restarted())
    assert pool.alive() == 2 and pool.restarts == 1
    assert all(w.proc.pid != victim.proc.pid for w in pool._workers)


def test_children_ignore_sigterm_and_exit_when_the_pool_closes(tiny_model_path):
    pool = InferencePool(tiny_model_path, processes=1).start()
    child = pool._workers[0].proc
    os.kill(child.pid, signal.SIGTERM)  # a process-group SIGTERM reaches children too
    with pytest.raises(Exception):  # noqa: B017 - still running: wait times out
        child.wait(timeout=0.5)
    pool.close()  # closes its socket, kills and reaps it
    assert child.poll() in (0, -signal.SIGKILL)  # not -SIGTERM: that signal was ignored


def test_a_model_that_cannot_load_stops_the_start_with_its_error(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(InferenceProcessError, match="ONNX Runtime cannot load it"):
        InferencePool(tmp_path, processes=1, start_timeout_s=60).start()
