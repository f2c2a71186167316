"""Greedy checkpoint soup: averaging and the keep/drop rule, on checkpoints the test writes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from training.soup import average, greedy_soup, load_weights


def _checkpoint(root, name, w: float, steps: int = 7):
    path = root / name
    path.mkdir()
    save_file(
        {"w": torch.full((3,), w), "steps": torch.tensor([steps])}, str(path / "model.safetensors")
    )
    return path


def test_average_means_floats_and_keeps_integer_buffers():
    a = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 5.0]), "ids": torch.tensor([0, 1])}
    out = average([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(out["ids"], a["ids"]) and out["ids"].dtype == torch.int64
    with pytest.raises(ValueError):
        average([])


def test_greedy_soup_keeps_what_helps_and_drops_what_hurts(tmp_path):
    # validation score peaks when the mean weight is 1.0
    def evaluate(state):
        return -abs(float(state["w"].mean()) - 1.0)

    ckpts = {
        _checkpoint(tmp_path, "checkpoint-1", 0.8): -0.2,  # best single
        _checkpoint(tmp_path, "checkpoint-2", 1.2): -0.2 - 1e-6,  # averages to 1.0: kept
        _checkpoint(tmp_path, "checkpoint-3", 5.0): -4.0,  # ruins the average: dropped
    }
    weights, soup = greedy_soup(ckpts, evaluate)
    assert soup.ingredients == ["checkpoint-1", "checkpoint-2"]
    assert soup.score == pytest.approx(0.0, abs=1e-6) and soup.best_single == -0.2
    assert [t["kept"] for t in soup.tried] == [True, False]
    assert torch.allclose(weights["w"], torch.full((3,), 1.0))
    assert int(weights["steps"]) == 7


def test_single_checkpoint_soup_is_that_checkpoint(tmp_path):
    only = _checkpoint(tmp_path, "checkpoint-5", 0.5)
    weights, soup = greedy_soup({only: 0.9}, lambda s: pytest.fail("nothing to try"))
    assert soup.ingredients == ["checkpoint-5"] and soup.tried == []
    assert torch.equal(weights["w"], load_weights(only)["w"])
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path)
