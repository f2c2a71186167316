"""Greedy checkpoint soup (Wortsman et al., 2022, "Model soups"), over one run's epoch checkpoints.

Checkpoints are ranked by their validation score; each is added to the running weight average
only if the average scores at least as well on validation. The soup therefore never scores below
the best single checkpoint on validation, and costs one validation pass per candidate and no
extra inference cost: the result is one ordinary model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


def load_weights(checkpoint: Path) -> dict:
    """The model weights saved in a Trainer checkpoint directory (safetensors or .bin)."""
    import torch

    path = checkpoint / "model.safetensors"
    if path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path))
    path = checkpoint / "pytorch_model.bin"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{checkpoint} holds no model.safetensors or pytorch_model.bin")


def average(states: Sequence[Mapping]) -> dict:
    """Element-wise mean of state dicts with the same keys (integer buffers kept from the first)."""
    if not states:
        raise ValueError("nothing to average")
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(s[key].float() for s in states[1:]) + first.float()
            out[key] = (out[key] / len(states)).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


@dataclass
class Soup:
    ingredients: list[str]
    """Checkpoint names in the soup, best single first."""
    score: float
    """Validation score of the averaged weights."""
    best_single: float
    tried: list[dict] = field(default_factory=list)
    """Every candidate: name, its own score, the soup score with it, kept or not."""

    def to_dict(self) -> dict:
        return {
            "ingredients": self.ingredients,
            "validation_score": self.score,
            "best_single_validation_score": self.best_single,
            "tried": self.tried,
        }


def greedy_soup(
    scored: Mapping[Path, float], evaluate: Callable[[dict], float]
) -> tuple[dict, Soup]:
    """Greedy soup of checkpoints with known validation scores.

    `evaluate(state_dict)` loads the weights into the model and returns the validation score
    (higher is better). Returns the soup's weights and a record of what was tried.
    """
    if not scored:
        raise ValueError("no checkpoints to make a soup of")
    ranked = sorted(scored, key=lambda p: scored[p], reverse=True)
    best = ranked[0]
    kept = [load_weights(best)]
    soup = Soup([best.name], scored[best], scored[best])
    for candidate in ranked[1:]:
        trial = kept + [load_weights(candidate)]
        score = evaluate(average(trial))
        keep = score >= soup.score
        soup.tried.append(
            {"checkpoint": candidate.name, "own": scored[candidate], "soup": score, "kept": keep}
        )
        log.info(
            "soup + %s (own %.4f): %.4f %s",
            candidate.name,
            scored[candidate],
            score,
            "kept" if keep else "dropped",
        )
        if keep:
            kept, soup.score = trial, score
            soup.ingredients.append(candidate.name)
    return average(kept), soup
