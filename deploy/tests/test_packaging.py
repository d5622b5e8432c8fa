import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from chassis.settings import SERVICE_PORTS
from deploy.infra.paths import REPO_ROOT

yaml = pytest.importorskip("yaml", reason="PyYAML reads the compose file and the manifests")


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_service_on_its_design_port_with_its_own_role():
    services = _compose()["services"]

    assert services["kafka"]["ports"] == ["9092:9092"]
    assert services["postgres"]["ports"] == ["5432:5432"]
    for name, port in SERVICE_PORTS.items():
        service = services[name]
        env = service["environment"]
        assert service["ports"] == [f"{port}:{port}"]
        assert (env["ORCHARD_SERVICE"], env["ORCHARD_DB_SCHEMA"]) == (name, name)
        assert int(env["ORCHARD_HTTP_PORT"]) == port
        assert urlsplit(env["DATABASE_URL"]).username == f"orchard_{name}"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_accepts_the_file():
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")

    result = subprocess.run(
        ["docker", "compose", "config", "-q"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr


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
