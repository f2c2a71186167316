"""The Ray engine's checks that run before Ray does: inputs, columns, output, model."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import ray

from scoring.config import ScoringConfig, ScoringError
from scoring.io import OutputLock
from scoring.ray_engine import load_model_files, resolve_inputs, score_with_ray


@pytest.fixture
def tree(tmp_path):
    """in/a.csv, in/b/c.csv, in/b/d.csv, plus files that are not data."""
    frame = pd.DataFrame({"id": [1, 2], "text": ["good", "bad"]})
    for name in ("a.csv", "b/c.csv", "b/d.csv"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp_path / "in" / name, index=False)
    (tmp_path / "in" / "_SUCCESS").write_text("")
    (tmp_path / "in" / ".a.csv.crc").write_text("")
    (tmp_path / "in" / "_tmp").mkdir()
    frame.to_csv(tmp_path / "in" / "_tmp" / "e.csv", index=False)
    return tmp_path / "in"


def names(inputs, base) -> list[str]:
    return [p[len(str(base)) + 1 :] for p in inputs.paths]


def test_a_directory_a_glob_a_file_and_a_uri(tree):
    assert names(resolve_inputs(tree), tree) == ["a.csv", "b/c.csv", "b/d.csv"]
    assert names(resolve_inputs(f"{tree}/b/*.csv"), tree) == ["b/c.csv", "b/d.csv"]
    assert names(resolve_inputs(f"{tree}/*.csv"), tree) == ["a.csv"]  # * stays in its folder
    assert names(resolve_inputs(f"{tree}/**/*.csv"), tree) == [
        "_tmp/e.csv",
        "a.csv",
        "b/c.csv",
        "b/d.csv",
    ]
    assert names(resolve_inputs(f"file://{tree}/b"), tree) == ["b/c.csv", "b/d.csv"]
    single = resolve_inputs(tree / "a.csv")
    assert (names(single, tree), single.fmt) == (["a.csv"], "csv")


def test_inputs_that_cannot_be_scored(tree, tmp_path):
    with pytest.raises(ScoringError, match="input not found"):
        resolve_inputs(tmp_path / "nope")
    with pytest.raises(ScoringError, match="no input files match"):
        resolve_inputs(f"{tree}/*.parquet")
    pd.DataFrame({"text": ["x"]}).to_parquet(tree / "b" / "x.parquet")
    with pytest.raises(ScoringError, match=r"several formats \(csv: .*parquet: "):
        resolve_inputs(tree)
    assert resolve_inputs(tree, "parquet").fmt == "parquet"  # --input-format: all read as it


def cfg(src, dst, **kw) -> ScoringConfig:
    return ScoringConfig(
        input=src, output=dst, text_column="text", engine="ray", progress=False, **kw
    )


def test_fails_fast_before_ray_starts(tree, tmp_path):
    """A missing column, an unreadable first file, a taken or existing output, an unknown
    model: each a clear error, before any Ray process starts."""
    out = tmp_path / "out.parquet"
    with pytest.raises(ScoringError, match=r"text column 'review' not found .*'id', 'text'"):
        score_with_ray(ScoringConfig(input=tree, output=out, text_column="review", engine="ray"))
    with pytest.raises(ScoringError, match="id column 'key' not found"):
        score_with_ray(cfg(tree, out, id_column="key"))
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ScoringError, match=r"cannot read .*bad\.parquet as PARQUET"):
        score_with_ray(cfg(bad, out))
    with OutputLock(out), pytest.raises(ScoringError, match="another run .* is writing"):
        score_with_ray(cfg(tree, out))
    out.write_text("done before")
    with pytest.raises(ScoringError, match="already exists.*--overwrite"):
        score_with_ray(cfg(tree, out))
    with pytest.raises(ScoringError, match="'nope:1' is neither a directory nor in the Bento"):
        score_with_ray(cfg(tree, out, model="nope:1", overwrite=True))
    assert out.read_text() == "done before"
    assert not ray.is_initialized()


@pytest.mark.slow
def test_model_from_a_directory_is_checked(tmp_path, tiny_bento_model):
    import bentoml

    model = load_model_files(str(tiny_bento_model))
    assert model.labels == ["negative", "positive"] and model.name == str(tiny_bento_model)
    assert sorted(model.files) == ["model.onnx", "model_config.json", "tokenizer.json"]
    copy = tmp_path / "model"
    copy.mkdir()
    for name, data in model.files.items():
        (copy / name).write_bytes(data)
    assert load_model_files(str(copy)).files == model.files
    (copy / "model.onnx").write_bytes(model.files["model.onnx"][:1000])  # truncated graph
    with pytest.raises(ScoringError, match=r"does not load: .*model.onnx"):
        load_model_files(str(copy))
    (copy / "model.onnx").write_bytes(model.files["model.onnx"])
    (copy / "model_config.json").write_text("{}")
    with pytest.raises(ScoringError, match=r"does not load: .*model_config.json"):
        load_model_files(str(copy))
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ScoringError, match="cannot read its files"):
        load_model_files(str(copy))
    assert bentoml.models.get(str(tiny_bento_model)).path  # the store was read, not changed


def test_what_a_ray_worker_imports():
    """The actors' module brings the inference leaf and the row rules, not the service's
    server (bentoml, its glue, the middleware), the HTTP client or training libraries."""
    code = (
        "import sys, scoring.ray_engine; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} | "
        "{m for m in sys.modules if m.startswith(('serving.', 'scoring.'))})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    loaded = set(done.stdout.split())
    assert {"ray", "onnxruntime", "tokenizers", "serving.inference", "serving.schema"} <= loaded
    unwanted = {
        "bentoml",
        "_bentoml_impl",
        "httpx",
        "torch",
        "transformers",
        "serving.bento",
        "serving.middleware",
        "serving.pool",
        "serving.metrics",
        "scoring.client",
    }
    assert not loaded & unwanted


def test_the_kuberay_manifest_matches_the_cli_and_the_pins():
    """The RayJob's entrypoint is a valid command of this CLI and its pip pins are ours."""
    import shlex
    from pathlib import Path

    import yaml

    from scoring.__main__ import parse_args

    root = Path(__file__).resolve().parents[2]
    job = yaml.safe_load((root / "scoring" / "deploy" / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "scoring"]
    cfg = parse_args(argv[3:])
    assert (cfg.engine, cfg.actors) == ("ray", 16)
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    cpus = int(workers["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    assert workers["replicas"] * cpus == cfg.actors, "one actor per worker CPU"
    pins = dict(line.split("==") for line in (root / "constraints.txt").read_text().split())
    lower = {k.lower(): v for k, v in pins.items()}
    for req in yaml.safe_load(job["spec"]["runtimeEnvYAML"])["pip"]:
        name, version = req.split("==")
        assert lower[name.lower()] == version, req
    assert lower["ray"] == job["spec"]["rayClusterSpec"]["rayVersion"]
