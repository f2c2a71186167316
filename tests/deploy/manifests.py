"""Read deploy/kubernetes/sentiment-service.yaml (shared by the manifest and image tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kubernetes" / "sentiment-service.yaml"


def load_manifest() -> dict[str, dict]:
    """{kind: document} of the manifest file."""
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert len(kinds) == len(docs), "one document per kind"
    return kinds


def pod_spec() -> dict:
    return load_manifest()["Deployment"]["spec"]["template"]["spec"]


def container_spec() -> dict:
    (container,) = pod_spec()["containers"]
    return container


def container_env() -> dict[str, str]:
    """The container's plain-valued environment variables (not those from secrets)."""
    return {e["name"]: e["value"] for e in container_spec().get("env", []) if "value" in e}
