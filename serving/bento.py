"""The stored-model reference of the service: a `bentoml.models.BentoModel` whose resolution
fails with a how-to. (Adjustments of BentoML's internals live in `serving.adjustments`.)"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from bentoml.exceptions import NotFound


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
