"""deploy/kubernetes: valid against the Kubernetes schema (offline), and consistent with the
service's shutdown, probes, port and user (tests/container runs the image with its settings)."""

from __future__ import annotations

import copy

import pytest

from serving.settings import ServiceSettings
from tests.deploy.manifests import container_env, container_spec, load_manifest, pod_spec

SERVICE_PORT = 3000  # the image's EXPOSE and BentoML's default port
K8S_VERSION = "1.30.0"  # the oldest version the manifests must work on


@pytest.mark.parametrize("version", [K8S_VERSION, "1.37.0"])
def test_manifests_are_valid_against_the_kubernetes_schema(version):
    import kubernetes_validate

    for doc in load_manifest().values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_manifest():
    """The check above is real: a misspelt field and a wrong type both fail."""
    import kubernetes_validate

    deployment = load_manifest()["Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_probes_point_at_livez_and_readyz_on_the_service_port():
    container = container_spec()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": SERVICE_PORT}
    for probe, path in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ]:
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == SERVICE_PORT, probe
    # The model loads within the startup probe's window (cold start is seconds, tests/container).
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_shutdown_fits_in_the_termination_grace_period():
    """preStop sleep (endpoints removal), then SIGTERM: the drain bound, then exit; all of it
    before Kubernetes' SIGKILL, and no request may outlive the drain."""
    container, env = container_spec(), container_env()
    settings = ServiceSettings.from_env(env)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 3, "endpoints need a few seconds to drop the pod"
    assert settings.request_timeout_s <= settings.graceful_shutdown_s
    margin = 3  # process exit after the drain (tests/container: well under a second)
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert pre_stop + settings.graceful_shutdown_s + margin <= grace


def test_runs_non_root_with_a_read_only_root_and_only_tmp_writable():
    pod, container = pod_spec(), container_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}  # BENTOML_HOME=/tmp/bentoml in the image
    assert "emptyDir" in volumes["tmp"]


def test_cpu_limit_sets_the_inference_processes_and_requests_match():
    resources = container_spec()["resources"]
    assert resources["requests"] == resources["limits"]  # Guaranteed QoS
    assert float(resources["limits"]["cpu"]) >= 1


def test_service_and_autoscaler_target_the_deployment():
    kinds = load_manifest()
    deployment, service, hpa = (
        kinds["Deployment"],
        kinds["Service"],
        kinds["HorizontalPodAutoscaler"],
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container_spec()["ports"]}
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2  # one pod may drain while another serves
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0
