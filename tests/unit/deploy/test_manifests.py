"""deploy/ checked offline: nothing here has a container runtime or a cluster.

- the Helm chart rendered (tests/unit/deploy/helm_subset.py: the template subset it keeps to) and every
  Kubernetes manifest validated, strictly (unknown fields are errors), against the Kubernetes
  schemas kubernetes-validate ships; KEDA ScaledObjects against the CRD schema kept in
  deploy/schemas/keda-scaledobject.json, made strict the same way;
- deploy/compose*.yaml against the compose-spec JSON schema kept in deploy/schemas/compose-spec.json;
- deploy/Dockerfile parsed (dockerfile-parse) and its essentials checked;
- the wiring: commands, topics, consumer groups, probes and GENLOOM_* names match the code;
- deploy/grafana/genloom-dashboard.json queries only series and labels genloom exports, and all of them.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from infra.docs import SETTINGS_CLASSES
from infra.kafka.topics import jobs_topic
from schemas.enums import Modality
from workers.runner import jobs_group

from .helm_subset import CHART, TemplateError, render_chart, render_text

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S_VERSION = kubernetes_validate.latest_version()
#: variables genloom passes through to libraries that read them themselves
PASSTHROUGH = ("OTEL_", "AWS_", "HF_", "TRANSFORMERS_")
#: the kafka scaler's parameters (the `keda:"name=..."` tags of pkg/scalers/kafka_scaler.go in
#: kedacore/keda at 8b4f083c): the CRD types trigger metadata only as strings, so a misspelt key
#: would pass its schema and be ignored
KAFKA_SCALER_PARAMETERS = set("""activationLagThreshold allowIdleConsumers awsRegion bootstrapServers ca cert consumerGroup
    ensureEvenDistributionOfPartitions excludePersistentLag fullMetadata kerberosConfig kerberosDisableFAST
    kerberosServiceName key keyPassword keytab lagThreshold limitToPartitionsWithLag oauthExtensions
    oauthTokenEndpointUri offsetResetPolicy partitionLimitation password realm sasl saslTokenProvider
    scaleToZeroOnInvalidOffset scopes tls topic unsafeSsl username version""".split())


def known_settings() -> set[str]:
    return {(cls.model_config.get("env_prefix", "") + name).upper()
            for cls in SETTINGS_CLASSES for name in cls.model_fields}


def strict(schema: dict) -> dict:
    """The schema with unknown properties refused wherever it lists properties (what
    kubernetes-validate's strict schemas do; the API server would silently prune them)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


KEDA = jsonschema.Draft7Validator(strict(json.loads((DEPLOY / "schemas" / "keda-scaledobject.json").read_text())))
COMPOSE = jsonschema.Draft202012Validator(json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text()))


def validate_manifest(doc: dict) -> None:
    """Raise on a manifest its schema refuses."""
    if doc.get("apiVersion") == "keda.sh/v1alpha1":
        assert doc["kind"] == "ScaledObject", doc["kind"]
        KEDA.validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return render_chart()


@pytest.fixture(scope="module")
def manifests(rendered) -> list[dict]:
    return [doc for docs in rendered.values() for doc in docs]


def by_kind(manifests, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def test_every_rendered_manifest_validates(manifests):
    kinds = sorted({doc["kind"] for doc in manifests})
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "ScaledObject", "Secret", "Service"]
    for doc in manifests:
        validate_manifest(doc)


def test_a_broken_manifest_is_caught(manifests):
    deployment = copy.deepcopy(by_kind(manifests, "Deployment")["genloom-gateway"])
    deployment["spec"]["replicas"] = "two"  # a string where an integer belongs
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(deployment)
    typo = copy.deepcopy(by_kind(manifests, "Deployment")["genloom-gateway"])
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # unknown field
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(typo)
    scaled = copy.deepcopy(by_kind(manifests, "ScaledObject")["genloom-worker-text"])
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 8  # KEDA's metadata values are strings
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(scaled)
    del scaled["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(scaled)


def test_the_renderer_refuses_helm_beyond_its_subset():
    with pytest.raises(TemplateError, match="subset"):
        render_text("{{ if .Values.a }}x{{ end }}", {"a": 1})
    with pytest.raises(TemplateError, match="no such value"):
        render_text("replicas: {{ .Values.gateway.replicaz }}", {"gateway": {"replicas": 2}})
    with pytest.raises(TemplateError, match="toJson"):
        render_text("resources: {{ .Values.r }}", {"r": {"limits": {}}})
    assert render_text('{{ .Values.a | quote }} {{ .Values.b | toJson }} {{ .Release.Name }}',
                       {"a": 8, "b": {"y": 1, "x": [True]}}) == '"8" {"x":[true],"y":1} genloom'


def test_workers_one_per_modality_scaled_on_their_job_topic_lag(manifests):
    deployments = by_kind(manifests, "Deployment")
    scaled = by_kind(manifests, "ScaledObject")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for modality in Modality:
        name = f"genloom-worker-{modality.value}"
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "workers", modality.value]
        assert "replicas" not in deployments[name]["spec"]  # KEDA owns it
        (trigger,) = scaled[name]["spec"]["triggers"]
        assert scaled[name]["spec"]["scaleTargetRef"]["name"] == name
        assert trigger["type"] == "kafka"
        assert set(trigger["metadata"]) <= KAFKA_SCALER_PARAMETERS, set(trigger["metadata"]) - KAFKA_SCALER_PARAMETERS
        assert trigger["metadata"]["topic"] == jobs_topic(modality)
        assert trigger["metadata"]["consumerGroup"] == jobs_group(modality)
        assert trigger["metadata"]["bootstrapServers"] == values["settings"]["GENLOOM_KAFKA_BOOTSTRAP"]
        assert int(trigger["metadata"]["lagThreshold"]) == values["workers"][modality.value]["lagThreshold"]
    gpu = {m for m in Modality if "nvidia.com/gpu" in deployments[f"genloom-worker-{m.value}"]["spec"]["template"]
           ["spec"]["containers"][0]["resources"]["limits"]}
    assert gpu == {Modality.TEXT, Modality.IMAGE, Modality.VIDEO}
    text = deployments["genloom-worker-text"]["spec"]["template"]["spec"]
    assert text["nodeSelector"] == values["workers"]["text"]["nodeSelector"]
    assert text["tolerations"] == values["workers"]["text"]["tolerations"]


def test_processes_probes_and_disruption_budgets(manifests):
    deployments = by_kind(manifests, "Deployment")
    assert set(deployments) == {"genloom-gateway", "genloom-streams", "genloom-moderation",
                                *(f"genloom-worker-{m.value}" for m in Modality)}
    gateway = deployments["genloom-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["command"][:3] == ["python", "-m", "gateway"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = by_kind(manifests, "Service")["genloom-gateway"]
    assert service["spec"]["ports"][0]["targetPort"] == gateway["ports"][0]["name"]
    assert deployments["genloom-streams"]["spec"]["template"]["spec"]["containers"][0]["command"] == \
        ["python", "-m", "streams"]
    assert deployments["genloom-moderation"]["spec"]["template"]["spec"]["containers"][0]["command"] == \
        ["python", "-m", "workers", "moderation"]
    budgets = by_kind(manifests, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        container = pod["spec"]["containers"][0]
        ports = {p["name"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in ports
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["initContainers"][0]["command"] == ["genloom", "topics", "--create"]


def test_settings_and_secrets_name_real_variables(manifests):
    known = known_settings()
    config = by_kind(manifests, "ConfigMap")["genloom-settings"]["data"]
    secret = by_kind(manifests, "Secret")["genloom-secrets"]["stringData"]
    for name in [*config, *secret]:
        assert name in known or name.startswith(PASSTHROUGH), name
    for key in ("GENLOOM_API_KEYS", "GENLOOM_REQUEST_SIGNING_KEY", "GENLOOM_PRIVACY_KEY",
                "GENLOOM_GATEWAY_BROWSER_TOKEN_SECRET"):
        assert key in secret and key not in config


def compose_files() -> list[Path]:
    return sorted(DEPLOY.glob("compose*.yaml"))


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_compose_files_validate_against_the_compose_spec(path):
    COMPOSE.validate(yaml.safe_load(path.read_text()))


def test_a_broken_compose_file_is_caught():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    compose["services"]["gateway"]["comand"] = compose["services"]["gateway"].pop("command")
    with pytest.raises(jsonschema.ValidationError):
        COMPOSE.validate(compose)


def test_compose_runs_every_process_on_the_real_backends():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["gateway"][:3] == ["python", "-m", "gateway"]
    assert commands["streams"] == ["python", "-m", "streams"]
    assert commands["moderation"] == ["python", "-m", "workers", "moderation"]
    for modality in Modality:
        assert commands[f"worker-{modality.value}"] == ["python", "-m", "workers", modality.value]
    known = known_settings()
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        if service.get("build"):
            assert service["build"]["dockerfile"] == "deploy/Dockerfile"
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
            for variable in service["environment"]:
                assert variable in known or variable.startswith(PASSTHROUGH), variable
        if name != "topics":
            assert "test" in service["healthcheck"], name
    env = services["gateway"]["environment"]
    assert env["GENLOOM_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["GENLOOM_MEMORY_STORE"] == "cassandra" and env["GENLOOM_MEMORY_VECTORS"] == "weaviate"


def test_dockerfile_builds_from_pyproject_and_runs_unprivileged():
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    instructions = parser.structure
    stages = [i["value"].split() for i in instructions if i["instruction"] == "FROM"]
    assert [s[-1] for s in stages] == ["base", "builder", "runtime"]
    assert stages[0][0] == "${BASE_IMAGE}"  # CPU or CUDA by build argument
    runtime_at = max(n for n, i in enumerate(instructions) if i["instruction"] == "FROM")
    runtime = instructions[runtime_at:]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(i["instruction"] == "HEALTHCHECK" for i in runtime)
    # the extras it installs exist in pyproject.toml, and what it copies exists
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    (arg,) = [i["value"] for i in instructions if i["instruction"] == "ARG" and i["value"].startswith("EXTRAS=")]
    assert set(arg.split("=", 1)[1].split(",")) <= extras
    for copy_ in (i["value"].split() for i in instructions if i["instruction"] == "COPY"):
        if not copy_[0].startswith("--from"):
            for source in copy_[:-1]:
                assert (ROOT / source).exists(), source
    known = known_settings()
    for variable in parser.envs:  # the runtime stage's environment
        assert not variable.startswith("GENLOOM_") or variable in known, variable
    assert parser.envs["GENLOOM_CACHE_DIR"] in {i["value"].strip('[]" ') for i in runtime if i["instruction"] == "VOLUME"}
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    # the builder prebuilds the int8 kernel, where the runtime stage (no compiler) looks for it
    from infra.models.int8 import PREBUILT

    builder = instructions[[n for n, i in enumerate(instructions) if i["instruction"] == "FROM"][1]:runtime_at]
    assert any("python -m infra.models.int8 prebuild" in i["value"] for i in builder if i["instruction"] == "RUN")
    assert PREBUILT.is_relative_to(ROOT)  # inside the source tree the runtime stage copies whole from the builder
    assert ["--from=builder", "/app", "/app"] in [i["value"].split() for i in runtime if i["instruction"] == "COPY"]


def exported_series() -> dict[str, set[str]]:
    """Each series name genloom's metrics export (counters' _total, histograms' _bucket/_sum/_count)
    with its labels."""
    import infra.metrics as metrics
    from prometheus_client.metrics import MetricWrapperBase

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    series = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._name.startswith("genloom:"):
            extra = {"le"} if metric._type == "histogram" else set()
            for suffix in suffixes[metric._type]:
                series[metric._name + suffix] = set(metric._labelnames) | extra
    return series


def test_the_grafana_dashboard_queries_metrics_genloom_exports():
    import re

    dashboard = json.loads((DEPLOY / "grafana" / "genloom-dashboard.json").read_text())
    series = exported_series()
    assert "genloom:time_to_first_token_seconds_bucket" in series and "genloom:consumer_lag" in series
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"genloom:[a-z0-9_]+", target["expr"]))
            assert names <= set(series), (panel["title"], names - set(series))
            labels = set().union(*(series[n] for n in names)) | {"job", "instance"}
            for group in re.findall(r"by \(([^)]*)\)", target["expr"]):
                assert {g.strip() for g in group.split(",")} <= labels, (panel["title"], group)
            queried |= {n.removesuffix("_bucket").removesuffix("_total") for n in names}
    # every genloom metric has a panel
    assert {n.removesuffix("_bucket").removesuffix("_total") for n in series
            if not n.endswith(("_sum", "_count"))} <= queried


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == CHART.name and chart["type"] == "application"
    assert all(part.isdigit() for part in chart["version"].split("."))  # SemVer, as Helm requires
