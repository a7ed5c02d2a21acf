"""The Django admin of the recommender app: every registered model loads, searches and filters;
permissions follow the staff groups; event tables stay read-only; profiles are never deleted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db.models import Model
from django.forms.models import model_to_dict
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.groups import ML_ADMINS, MODERATORS
from accounts.models import ServiceKey, Tenant, UserToken
from accounts.services import service_key_create, user_token_issue
from recommender.models import EloRating, Impression, Match, Profile, ProfileStatus, Swipe
from recommender.services.events import ImpressionBatchIn, SwipeIn, impression_batch_ingest, swipe_batch_ingest
from recommender.services.profiles import profile_erase

# Every model the recommender registers (and tenants and credentials, which moved to accounts), so a
# model added later is covered without a new test.
RECOMMENDER_MODELS: list[type[Model]] = sorted(
    (m for m in admin.site._registry if m._meta.app_label in ("accounts", "recommender")),
    key=lambda m: m._meta.model_name,
)
EVENT_MODELS = [Impression, Swipe, Match, EloRating]
every_model = pytest.mark.parametrize("model", RECOMMENDER_MODELS, ids=lambda m: m._meta.model_name)


def admin_url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def first_row(model: type[Model]) -> Model:
    row = model._default_manager.order_by("pk").first()
    assert row is not None, f"the `data` fixture creates no {model.__name__}; add one so its admin is tested"
    return row


def results(response: Any) -> list[Model]:
    assert response.status_code == 200, response.status_code
    return list(response.context["cl"].result_list)


def staff_client(django_user_model: Any, username: str, group: str | None = None) -> Client:
    user = django_user_model.objects.create_user(username=username, password="x", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def data(tenant: Tenant, other_tenant: Tenant, make_profile: Callable[..., Profile]) -> dict[str, Profile]:
    """A little of everything, written through the services as the API would."""
    alice = make_profile(bio="Climber and baker.")
    bob = make_profile(gender="man", seeking=["woman"], bio="Chess and long walks.")
    carol = make_profile(bio="Night owl.")
    make_profile(tenant_=other_tenant)
    key = service_key_create(tenant=tenant, name="backend").record
    user_token_issue(profile=alice, issued_by=key)
    now = timezone.now() - timedelta(minutes=5)
    impression_batch_ingest(
        tenant=tenant,
        user=alice,
        batch=ImpressionBatchIn(
            candidate_ids=[bob.external_id, carol.external_id],
            positions=[0, 1],
            context_hash="ctx",
            timestamp=now,
            model_version="feed-v1",  # tagged: untagged impressions are sampled (ANALYTICS_SAMPLE_RATE)
        ),
    )
    swipe_batch_ingest(
        tenant=tenant,
        user=alice,
        session_id="s1",
        timestamp=now,
        swipes=[SwipeIn(bob.external_id, "like"), SwipeIn(carol.external_id, "pass")],
    )
    # Bob likes back: a mutual like, hence a Match (and Elo rows for all three).
    swipe_batch_ingest(
        tenant=tenant, user=bob, session_id="s2", timestamp=now, swipes=[SwipeIn(alice.external_id, "like")]
    )
    assert Match.objects.count() == 1 and EloRating.objects.count() == 3
    return {"alice": alice, "bob": bob, "carol": carol}


def test_every_recommender_model_is_registered() -> None:
    expected = {Tenant, Profile, ServiceKey, UserToken, Impression, Swipe, Match, EloRating}
    assert expected <= set(RECOMMENDER_MODELS)


# --- Every model, as a superuser ----------------------------------------------------------------


@every_model
def test_changelist_loads(admin_client: Client, data: dict[str, Profile], model: type[Model]) -> None:
    assert first_row(model) in results(admin_client.get(admin_url(model, "changelist")))


@every_model
def test_change_page_loads(admin_client: Client, data: dict[str, Profile], model: type[Model]) -> None:
    response = admin_client.get(admin_url(model, "change", first_row(model).pk))
    assert response.status_code == 200


def _value_at(obj: Any, path: str) -> Any:
    for part in path.split("__"):
        obj = getattr(obj, part)
    return obj


@every_model
def test_search_finds_the_row(admin_client: Client, data: dict[str, Profile], model: type[Model]) -> None:
    model_admin = admin.site._registry[model]
    assert model_admin.search_fields, f"{model.__name__} admin has no search"
    row = first_row(model)
    term = str(_value_at(row, model_admin.search_fields[0].lstrip("=^@")))
    assert row in results(admin_client.get(admin_url(model, "changelist"), {"q": term}))


def _filter_params(model_admin: admin.ModelAdmin, row: Model) -> dict[str, str]:
    """Query parameters selecting ``row`` through each list filter and the date hierarchy."""
    params: dict[str, str] = {}
    for entry in model_admin.list_filter:
        if isinstance(entry, str):
            field = row._meta.get_field(entry)
            if field.is_relation:
                params[f"{entry}__id__exact"] = str(getattr(row, field.attname))
            else:
                params[f"{entry}__exact"] = str(getattr(row, entry))
        elif entry[1] is admin.EmptyFieldListFilter:
            params[f"{entry[0]}__isempty"] = "1" if getattr(row, entry[0]) in (None, "") else "0"
        else:
            pytest.fail(f"no test case for list filter {entry!r}; extend _filter_params")
    if model_admin.date_hierarchy:
        when = timezone.localtime(getattr(row, model_admin.date_hierarchy))
        params.update({f"{model_admin.date_hierarchy}__{k}": str(getattr(when, k)) for k in ("year", "month", "day")})
    return params


@every_model
def test_filters_select_the_row(
    admin_client: Client, data: dict[str, Profile], other_tenant: Tenant, model: type[Model]
) -> None:
    model_admin = admin.site._registry[model]
    row = first_row(model)
    params = _filter_params(model_admin, row)
    url = admin_url(model, "changelist")
    assert row in results(admin_client.get(url, params))
    if "tenant" in model_admin.list_filter:
        assert row not in results(admin_client.get(url, {**params, "tenant__id__exact": str(other_tenant.pk)}))


# --- Who may see what ---------------------------------------------------------------------------


@every_model
def test_staff_without_permissions_is_forbidden(
    django_user_model: Any, data: dict[str, Profile], model: type[Model]
) -> None:
    client = staff_client(django_user_model, "nobody")
    assert client.get(admin_url(model, "changelist")).status_code == 403
    assert client.get(admin_url(model, "change", first_row(model).pk)).status_code == 403


@every_model
def test_non_staff_is_sent_to_login(django_user_model: Any, data: dict[str, Profile], model: type[Model]) -> None:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="app-user", password="x"))
    response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def _action(client: Client, model: type[Model], action: str, rows: list[Model]) -> Any:
    return client.post(
        admin_url(model, "changelist"), {"action": action, "_selected_action": [str(r.pk) for r in rows]}
    )


def test_moderator_views_and_hides_profiles_but_not_keys(django_user_model: Any, data: dict[str, Profile]) -> None:
    client = staff_client(django_user_model, "mod", MODERATORS)
    alice = data["alice"]
    assert client.get(admin_url(Profile, "changelist")).status_code == 200
    assert client.get(admin_url(Profile, "change", alice.pk)).status_code == 200
    assert _action(client, Profile, "hide", [alice]).status_code == 302
    alice.refresh_from_db()
    assert alice.status == ProfileStatus.HIDDEN
    assert _action(client, Profile, "restore", [alice]).status_code == 302
    alice.refresh_from_db()
    assert alice.status == ProfileStatus.ACTIVE
    assert client.get(admin_url(ServiceKey, "changelist")).status_code == 403
    assert client.get(admin_url(ServiceKey, "change", first_row(ServiceKey).pk)).status_code == 403


def test_ml_admin_views_events_but_cannot_moderate(django_user_model: Any, data: dict[str, Profile]) -> None:
    client = staff_client(django_user_model, "ml", ML_ADMINS)
    for model in EVENT_MODELS:
        assert client.get(admin_url(model, "changelist")).status_code == 200
    alice = data["alice"]
    assert _action(client, Profile, "hide", [alice]).status_code == 403
    alice.refresh_from_db()
    assert alice.status == ProfileStatus.ACTIVE
    # Keys are visible to ML admins, but revoking is for superusers.
    key = first_row(ServiceKey)
    assert _action(client, ServiceKey, "revoke", [key]).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


# --- Read-only tables ---------------------------------------------------------------------------


class _AllPowerful:
    """A user holding every permission; no database needed, so usable at collection time."""

    is_active = is_staff = is_superuser = True

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return True


def _read_only_models() -> list[type[Model]]:
    """The models whose admin refuses changes even to a user holding every permission."""
    request = RequestFactory().get("/")
    request.user = _AllPowerful()
    return [m for m in RECOMMENDER_MODELS if not admin.site._registry[m].has_change_permission(request)]


def test_event_tables_are_read_only() -> None:
    assert set(EVENT_MODELS) <= set(_read_only_models())


@pytest.mark.parametrize("model", _read_only_models(), ids=lambda m: m._meta.model_name)
def test_read_only_tables_refuse_writes(admin_client: Client, data: dict[str, Profile], model: type[Model]) -> None:
    row = first_row(model)
    before = model_to_dict(row)
    # Whatever the form would carry: every field set to something else.
    tampered = {name: "1" for name in before} | {"_save": "Save"}
    assert admin_client.post(admin_url(model, "change", row.pk), tampered).status_code == 403
    assert model_to_dict(model._default_manager.get(pk=row.pk)) == before
    assert admin_client.get(admin_url(model, "add")).status_code == 403
    assert admin_client.get(admin_url(model, "delete", row.pk)).status_code == 403
    assert _action(admin_client, model, "delete_selected", [row]).status_code == 403
    assert model._default_manager.filter(pk=row.pk).exists()


# --- Profiles -----------------------------------------------------------------------------------


def test_profiles_cannot_be_deleted_or_added(admin_client: Client, data: dict[str, Profile]) -> None:
    alice = data["alice"]
    response = admin_client.get(admin_url(Profile, "changelist"))
    actions = [value for value, _label in response.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions
    assert {"hide", "restore", "ban"} <= set(actions)
    assert _action(admin_client, Profile, "delete_selected", [alice]).status_code == 403
    assert admin_client.get(admin_url(Profile, "delete", alice.pk)).status_code == 403
    assert admin_client.get(admin_url(Profile, "add")).status_code == 403
    assert Profile.objects.filter(pk=alice.pk).exists()


def test_ban_skips_erased_profiles(admin_client: Client, data: dict[str, Profile]) -> None:
    erased = profile_erase(profile=data["carol"])
    bob = data["bob"]
    response = _action(admin_client, Profile, "ban", [erased, bob])
    assert response.status_code == 302
    erased.refresh_from_db()
    bob.refresh_from_db()
    assert (erased.status, bob.status) == (ProfileStatus.ERASED, ProfileStatus.BANNED)
    notes = [str(m) for m in admin_client.get(admin_url(Profile, "changelist")).context["messages"]]
    assert any("1 erased profile(s) skipped" in n for n in notes)


def test_change_page_shows_activity_counts(admin_client: Client, data: dict[str, Profile]) -> None:
    response = admin_client.get(admin_url(Profile, "change", data["alice"].pk))
    shown = [f for fs in response.context["adminform"] for line in fs for f in line if f.is_readonly]
    fields = {f.field["name"]: f.contents() for f in shown}
    assert fields["swipes_made_count"] == "2"
    assert fields["swipes_received_count"] == "1"


def _change_form_data(client: Client, profile: Profile) -> dict[str, Any]:
    form = client.get(admin_url(Profile, "change", profile.pk)).context["adminform"].form
    return {name: ("" if form[name].value() is None else form[name].value()) for name in form.fields}


def test_profile_edit_goes_through_the_api_rules(admin_client: Client, data: dict[str, Profile]) -> None:
    alice = data["alice"]
    url = admin_url(Profile, "change", alice.pk)
    post = _change_form_data(admin_client, alice)

    # "erased" is for the erase service only; malformed prompts are refused as by the API.
    for bad in ({"status": ProfileStatus.ERASED}, {"prompts": '[{"nope": 1}]'}, {"seeking": '["robot"]'}):
        response = admin_client.post(url, {**post, **bad})
        assert response.status_code == 200 and response.context["adminform"].form.errors, bad
    alice.refresh_from_db()
    assert alice.status == ProfileStatus.ACTIVE and alice.seeking == ["man"]

    updated_before = alice.updated_at
    assert admin_client.post(url, {**post, "bio": "New bio.", "diet": "vegan"}).status_code == 302
    alice.refresh_from_db()
    assert (alice.bio, alice.diet) == ("New bio.", "vegan")
    assert alice.updated_at > updated_before


def test_search_by_non_uuid_in_event_table_matches_nothing(admin_client: Client, data: dict[str, Profile]) -> None:
    assert results(admin_client.get(admin_url(Swipe, "changelist"), {"q": "not-a-uuid"})) == []
    assert results(admin_client.get(admin_url(Swipe, "changelist"), {"q": str(uuid.uuid4())})) == []


def test_profile_search_by_bio(admin_client: Client, data: dict[str, Profile]) -> None:
    assert results(admin_client.get(admin_url(Profile, "changelist"), {"q": "chess"})) == [data["bob"]]


# --- Credentials --------------------------------------------------------------------------------


def test_service_keys_are_revoked_not_added_and_hash_hidden(admin_client: Client, data: dict[str, Profile]) -> None:
    key = first_row(ServiceKey)
    page = admin_client.get(admin_url(ServiceKey, "change", key.pk)).content.decode()
    assert key.key_hash not in page and key.key_prefix in page
    assert admin_client.get(admin_url(ServiceKey, "add")).status_code == 403
    assert _action(admin_client, ServiceKey, "revoke", [key]).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


@every_model
def test_changelist_queries_do_not_grow_per_row(
    admin_client: Client, data: dict[str, Profile], model: type[Model], django_assert_max_num_queries: Any
) -> None:
    # Several rows per table are present; one query per row (a missing list_select_related)
    # would push this over the bound.
    with django_assert_max_num_queries(10):
        admin_client.get(admin_url(model, "changelist"))
