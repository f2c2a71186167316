"""docker/requirements.lock: every package the image installs, pinned, and up to date with
pyproject.toml's serve group and constraints.txt (tests/container checks the image against it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("docker_lock", ROOT / "docker" / "lock.py")
lock = importlib.util.module_from_spec(_spec)  # docker/lock.py, a script
_spec.loader.exec_module(lock)


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in lock.LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_file_is_up_to_date():
    out = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "lock.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_lock_pins_the_serve_group_and_what_it_needs():
    pins = lock_pins()
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in groups["optional-dependencies"]["serve"]:
        req = Requirement(spec)
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), spec
    # what bentoml's server stack brings, which `lock_packages: false` used to leave floating
    for name in ("uvicorn", "starlette", "h11", "pydantic-core", "anyio"):
        assert name in pins, name
    for name in ("torch", "transformers", "optimum", "onnx", "ray"):
        assert name not in pins, name


def test_bento_installs_the_lock_file():
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert (ROOT / bentofile["python"]["requirements_txt"]).resolve() == lock.LOCK
    assert not bentofile["python"].get("packages")


def test_a_package_missing_from_constraints_is_named(tmp_path):
    constraints = tmp_path / "constraints.txt"
    kept = [
        line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if not line.lower().startswith(("h11==", "starlette=="))
    ]
    constraints.write_text("\n".join(kept) + "\n")
    with pytest.raises(ValueError, match=r"h11==.* starlette==.*add them"):
        lock.lock(constraints=constraints)
