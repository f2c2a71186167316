"""Fine-tune a Hugging Face transformer for sentiment classification.

`python -m training --help`; the plain entry point is `training.train.run_training(config)`.
"""

from training.config import TrainConfig, load_config
from training.data import DataError

__all__ = ["DataError", "TrainConfig", "load_config", "run_training"]


def run_training(config: TrainConfig):
    """Train with `config` and return the run directory (imports torch lazily)."""
    from training.train import run_training as _run

    return _run(config)
