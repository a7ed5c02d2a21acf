"""The OpenAPI schema agrees with the views.

Two ways it can disagree, two tests: the generator cannot describe a view (an unannotated view,
an unresolvable serializer, a naming collision: ``manage.py spectacular --validate --fail-on-warn``
fails), or a view answers something the schema does not say (every operation is called here, on
its happy path and its main errors, and each real answer is validated against the schema: an
undocumented status code, a missing field, an undocumented field or a wrong type fails).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts.models import Tenant
from accounts.services import service_key_create
from recommender.models import Profile
from recommender.services.embeddings import embeddings_upsert
from tests.conftest import bearer_client, profile_data

SCHEMA_URL = "/api/schema/"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The schema as served (JSON), generated once for the module."""
    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


def test_schema_generates_without_warnings_and_validates(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    # raises SchemaGenerationError (a CommandError) on any warning or error, or an invalid schema
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    generated = yaml.safe_load(out.read_text())
    assert generated["openapi"].startswith("3.")
    assert set(generated["components"]["securitySchemes"]) == {"serviceKey", "userToken"}


def _api_routes(resolver: URLResolver | None = None, prefix: str = "") -> Iterator[tuple[str, type[APIView]]]:
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _api_routes(entry, pattern)
        elif isinstance(entry, URLPattern):
            view = getattr(entry.callback, "cls", None)
            if view is not None and issubclass(view, APIView) and not pattern.startswith("api/schema/"):
                yield "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern), view


def test_every_api_view_is_in_the_schema(schema: dict[str, Any]) -> None:
    routes = dict(_api_routes())
    assert len(routes) >= 15
    for path, view in routes.items():
        assert path in schema["paths"], f"{path} ({view.__name__}) is not in the schema"
        documented = {m.upper() for m in schema["paths"][path]}
        implemented = {m.upper() for m in view.http_method_names if hasattr(view, m) and m not in ("options", "head")}
        assert documented == implemented, path


def test_schema_is_served_with_offline_swagger_ui_and_redoc(db: None) -> None:
    client = APIClient()
    as_yaml = client.get(SCHEMA_URL)
    assert as_yaml.status_code == 200 and "openapi" in yaml.safe_load(as_yaml.content)
    as_json = client.get(SCHEMA_URL, {"format": "json"})
    assert as_json.status_code == 200 and "/api/v1/ml/embeddings/batch" in json.loads(as_json.content)["paths"]
    # a key in the header changes nothing: the schema is public and ignores credentials
    assert bearer_client("psk_not-a-key").get(SCHEMA_URL).status_code == 200
    for page, asset in (
        ("/api/schema/swagger-ui/", "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/schema/redoc/", "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ):
        response = client.get(page)
        assert response.status_code == 200
        html = response.content.decode()
        assert "/static/" + asset in html, page
        assert "cdn." not in html and "https://" not in html, f"{page} would load files from the internet"
        assert finders.find(asset), f"{asset} is not installed (drf-spectacular-sidecar)"


# --------------------------------------------------------------------------- answers vs schema


def _json_schema(node: Any, *, strict: bool = True) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: ``nullable`` becomes a null alternative, references
    point at ``$defs``, and (strict) objects with declared properties refuse undeclared ones."""
    if isinstance(node, list):
        return [_json_schema(v, strict=strict) for v in node]
    if not isinstance(node, dict):
        return node
    skip = {"nullable", "example", "examples", "readOnly", "writeOnly", "discriminator", "deprecated"}
    out = {k: _json_schema(v, strict=strict) for k, v in node.items() if k not in skip}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if strict and "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class AnswerChecker:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.defs = {name: _json_schema(s) for name, s in schema["components"]["schemas"].items()}
        self.templates = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", p) + "$"), p) for p in schema["paths"]]
        self.seen: set[tuple[str, str]] = set()
        self.statuses: set[tuple[str, str, int]] = set()

    def template(self, path: str) -> str:
        matches = [t for regex, t in self.templates if regex.match(path)]
        assert matches, f"{path} matches no path of the schema"
        # a literal path wins over a template: /profiles/batch is not /profiles/{external_id}
        return min(matches, key=lambda t: t.count("{"))

    def check(self, method: str, path: str, response: Any) -> Any:
        template = self.template(path.split("?")[0])
        operation = self.schema["paths"][template][method.lower()]
        documented = operation["responses"]
        status = str(response.status_code)
        assert status in documented, f"{method} {template} answered {status}, not documented ({sorted(documented)})"
        self.seen.add((method.upper(), template))
        self.statuses.add((method.upper(), template, response.status_code))
        spec = documented[status]
        content = spec.get("content", {}).get("application/json")
        if content is None:
            assert not response.content, f"{method} {template} {status}: a body the schema does not describe"
            return None
        body = response.json()
        validator = jsonschema.Draft202012Validator(
            {**_json_schema(content["schema"]), "$defs": self.defs}, format_checker=jsonschema.FormatChecker()
        )
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{method} {template} {status}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
        for header in spec.get("headers", {}):
            if header == "Retry-After":
                assert response.has_header(header), f"{method} {template} {status}: no {header}"
        return body


@pytest.fixture
def checker(schema: dict[str, Any]) -> AnswerChecker:
    return AnswerChecker(schema)


def _json_call(client: APIClient, checker: AnswerChecker) -> Callable[..., Any]:
    def call(method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        if method == "GET":
            response = client.get(path, body)
        else:
            response = getattr(client, method.lower())(path, body, format="json")
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code, response.content[:300])
        return checker.check(method, path, response)

    return call


def test_every_operation_answers_what_the_schema_says(
    checker: AnswerChecker,
    schema: dict[str, Any],
    isolated_ml_state: None,
    tenant: Tenant,
    other_tenant: Tenant,
    service_client: APIClient,
    make_profile: Callable[..., Profile],
    user_client_for: Callable[[Profile], APIClient],
    settings: Any,
) -> None:
    svc = _json_call(service_client, checker)
    anon = _json_call(APIClient(), checker)
    now = datetime.now(UTC).isoformat()
    woman = make_profile(gender="woman", seeking=["man"], bio="Hiking and coffee.")
    man = make_profile(gender="man", seeking=["woman"], bio="Mountains and trail running.")
    embeddings_upsert(profile_ids=[woman.pk, man.pk])
    user = _json_call(user_client_for(woman), checker)
    w, m = str(woman.external_id), str(man.external_id)

    # health, public
    anon("GET", "/api/v1/health", expect=200)

    # profiles (service key)
    created = svc("POST", "/internal/v1/profiles", profile_data(), expect=201)
    svc("POST", "/internal/v1/profiles", profile_data(external_id=created["external_id"]), expect=409)
    svc("POST", "/internal/v1/profiles", {"age": 12}, expect=400)
    anon("POST", "/internal/v1/profiles", profile_data(), expect=401)
    user("POST", "/internal/v1/profiles", profile_data(), expect=403)
    detail = f"/internal/v1/profiles/{created['external_id']}"
    svc("GET", detail, expect=200)
    svc("PATCH", detail, {"bio": "Updated."}, expect=200)
    svc("PATCH", detail, {"age": 5}, expect=400)
    svc("GET", f"/internal/v1/profiles/{uuid.uuid4()}", expect=404)
    svc("POST", f"/internal/v1/users/{m}/tokens", expect=201)
    svc("DELETE", detail, expect=204)

    # bulk onboarding (service key)
    batch = "/internal/v1/profiles/batch"
    svc("POST", batch, {"profiles": [profile_data(), profile_data()]}, expect=201)
    svc("POST", batch, {"profiles": [profile_data(), {"age": 12}], "mode": "per_item"}, expect=200)
    svc("POST", batch, {"profiles": [profile_data(), {"age": 12}]}, expect=400)
    svc("POST", batch, {"profiles": [profile_data()] * 501}, expect=413)
    user("POST", batch, {"profiles": [profile_data()]}, expect=403)

    # the user's own profile
    user("GET", "/api/v1/me", expect=200)
    user("PATCH", "/api/v1/me", {"bio": "Still hiking."}, expect=200)
    user("PATCH", "/api/v1/me", {"status": "banned"}, expect=400)

    # events
    swipes = {"session_id": "s1", "timestamp": now, "swipes": [{"candidate_id": m, "action": "like"}]}
    user("POST", "/api/v1/events/swipes", swipes, expect=201)
    user("POST", "/api/v1/events/swipes", swipes, expect=200)
    user("POST", "/api/v1/events/swipes", {**swipes, "swipes": []}, expect=400)
    impressions = {"candidate_ids": [m], "positions": [0], "timestamp": now, "model_version": "feed-v1"}
    user("POST", "/api/v1/events/impressions", impressions)
    matches = {"matches": [{"user_id": w, "candidate_id": m, "timestamp": now}]}
    svc("POST", "/internal/v1/events/matches", matches, expect=201)
    unknown_match = {"user_id": w, "candidate_id": str(uuid.uuid4()), "timestamp": now}
    svc("POST", "/internal/v1/events/matches", {"matches": [unknown_match]}, expect=400)

    # feeds
    user("GET", "/api/v1/feed", {"count": 5}, expect=200)
    user("GET", "/api/v1/feed", {"count": 0}, expect=400)
    svc("POST", "/internal/ml/recommendations", {"tenant_id": tenant.slug, "user_id": m, "count": 3}, expect=200)
    svc("POST", "/internal/ml/recommendations", {"tenant_id": other_tenant.slug, "user_id": m}, expect=403)
    svc("POST", "/internal/ml/recommendations", {"tenant_id": tenant.slug, "user_id": str(uuid.uuid4())}, expect=404)

    # safety
    third = make_profile(gender="man", seeking=["woman"])
    user("POST", "/api/v1/reports", {"profile_id": str(third.external_id), "reason": "spam_scam"}, expect=201)
    user("POST", "/api/v1/reports", {"profile_id": str(third.external_id), "reason": "nope"}, expect=400)
    user("POST", "/api/v1/blocks", {"profile_id": m}, expect=201)
    user("POST", "/api/v1/blocks", {"profile_id": m}, expect=200)
    user("POST", "/api/v1/appeals", {"text": "Please look again."}, expect=400)
    svc("POST", "/api/v1/ml/safety/classify", {"texts": ["Hi, I like hiking.", "send me bitcoin"]}, expect=200)
    svc("POST", "/api/v1/ml/safety/classify", {"texts": []}, expect=400)

    # the ML API
    svc("POST", "/api/v1/ml/embeddings/batch", {"texts": ["Hiking."]}, expect=200)
    svc("POST", "/api/v1/ml/embeddings/batch", {"profile_ids": [w, m]}, expect=200)
    svc("POST", "/api/v1/ml/embeddings/batch", {"texts": ["x"] * 129}, expect=413)
    svc("POST", "/api/v1/ml/embeddings/batch", {"texts": ["x" * 2001]}, expect=400)
    user("POST", "/api/v1/ml/embeddings/batch", {"texts": ["x"]}, expect=403)
    anon("POST", "/api/v1/ml/embeddings/batch", {"texts": ["x"]}, expect=401)
    pairs = [{"a": {"profile_id": w}, "b": {"profile_id": m}}, {"a": {"text": "Hiking"}, "b": {"profile_id": m}}]
    svc("POST", "/api/v1/ml/similarity/batch", {"pairs": pairs}, expect=200)
    svc("POST", "/api/v1/ml/similarity/batch", {"pairs": [{"a": {"text": "x"}}]}, expect=400)
    rank = {"requests": [{"user_id": w, "candidate_ids": [m, str(third.external_id)]}]}
    svc("POST", "/api/v1/ml/profiles/rank/batch", rank, expect=200)
    too_many = {"requests": [{"user_id": w, "candidate_ids": [m] * 201}]}
    svc("POST", "/api/v1/ml/profiles/rank/batch", too_many, expect=413)
    svc("GET", "/api/v1/ml/health")  # degraded (no index): 200
    settings.ML_ENABLED = False
    svc("POST", "/api/v1/ml/embeddings/batch", {"profile_ids": [w]}, expect=200)
    svc("POST", "/api/v1/ml/similarity/batch", {"pairs": pairs}, expect=200)
    svc("POST", "/api/v1/ml/profiles/rank/batch", rank, expect=200)
    svc("GET", "/api/v1/ml/health", expect=503)
    settings.ML_ENABLED = True

    # throttled
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "ml_burst": "1/h"},
    }
    other = _json_call(bearer_client(service_key_create(tenant=tenant, name="throttled").raw), checker)
    other("POST", "/api/v1/ml/embeddings/batch", {"texts": []}, expect=400)
    other("POST", "/api/v1/ml/embeddings/batch", {"texts": []}, expect=429)

    operations = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert operations - checker.seen == set(), "operations no test called"
