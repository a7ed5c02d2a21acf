"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis).

The schema is loaded from the running application (``GET /api/schema/?format=json`` through
WSGI), so the fuzzer sees exactly what clients see. Every operation gets a bounded number of
generated requests (``PATRA_FUZZ_EXAMPLES``, default 5; CI runs the default), sent with the
credential its ``security`` requirement names (service key or user token of a tenant that has a
few profiles). Checks: no 5xx, every status code documented, the documented content type, and
every body valid against the documented schema. Hypothesis is derandomised, so a run is
reproducible and CI cannot flake on a new random draw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import Tenant
from accounts.services import service_key_create, user_token_issue

MAX_EXAMPLES = int(os.environ.get("PATRA_FUZZ_EXAMPLES", "5"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzz_credentials(tenant: Tenant, make_profile) -> Iterator[dict[str, str]]:
    user = make_profile()
    for i in range(3):
        make_profile(gender="man", seeking=["woman"], bio=f"fuzz candidate {i}")
    # schemathesis calls the WSGI app directly: like Django's test client, keep the request
    # signals from closing the test's database connection (it holds the test transaction).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield {
            "serviceKey": service_key_create(tenant=tenant, name="fuzz").raw,
            "userToken": user_token_issue(profile=user).raw,
        }
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def load_schema() -> Any:
    # Loaded at collection (schemathesis' lazy fixture loader does not support pytest 9); the
    # schema view needs no database.
    from patra.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


schema = load_schema()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db
def test_api_fuzz(case: Any, fuzz_credentials: dict[str, str]) -> None:
    requirements = case.operation.definition.raw.get("security")
    if requirements is None:
        requirements = case.operation.schema.raw_schema.get("security", [])
    names = [name for requirement in requirements for name in requirement]
    headers = {"Authorization": f"Bearer {fuzz_credentials[names[0]]}"} if names else {}
    response = case.call(headers=headers)
    case.validate_response(response, checks=CHECKS)
