"""Save the served artifact into the BentoML model store (docs/contracts.md)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

# The files a stored model holds, besides BentoML's own model.yaml.
STORED_FILES = ("model.onnx", "tokenizer.json", "model_config.json", "reference_profile.json")


def save_to_store(
    name: str,
    onnx_path: Path,
    tokenizer_path: Path,
    model_config: dict,
    labels: dict[str, str],
    metadata: dict,
    reference_profile: dict,
):
    """Create `name:<new version>` holding exactly `STORED_FILES`; return its `bentoml.Tag`."""
    import bentoml

    metadata = _drop_none(metadata)  # BentoML refuses None in metadata
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        shutil.copyfile(onnx_path, model.path_of("model.onnx"))
        shutil.copyfile(tokenizer_path, model.path_of("tokenizer.json"))
        Path(model.path_of("model_config.json")).write_text(json.dumps(model_config, indent=2))
        Path(model.path_of("reference_profile.json")).write_text(
            json.dumps(reference_profile, indent=1)
        )
    logger.info("saved %s into the BentoML model store", model.tag)
    return model.tag


def _drop_none(value):
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value if v is not None]
    return value
