"""The admin base classes every app's admin builds on.

* :class:`PatraModelAdmin`: a search by external id that uses an equality lookup on the UUID
  (millions of event rows), and an action the user may not run answered 403 rather than silently
  ignored.
* :class:`ReadOnlyAdmin`: view permission as normal, no add, change or delete for anyone, and no
  full ``COUNT(*)`` on every page: for event tables, audit logs and task runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.text import smart_split

EVENTS_PER_PAGE = 50


def _text_lookup(field: str) -> str:
    """The lookup of a plain-text search field, with Django's prefixes ("^" starts with)."""
    if field.startswith("^"):
        return f"{field[1:]}__istartswith"
    if field.startswith("="):
        return f"{field[1:]}__iexact"
    return f"{field}__icontains"


class PatraModelAdmin(admin.ModelAdmin):
    """Base for every app's admin: external-id search that uses an equality lookup, and a refused
    action answered with 403 rather than silently ignored."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # Django compares "=external_id" as text (a cast, so no index); a UUID term is matched
        # exactly instead. Search fields are "=<path to a profile>__external_id" or plain text.
        term = search_term.strip()
        fields = self.get_search_fields(request)
        uuid_fields = [f for f in fields if f.startswith("=") and f.endswith("external_id")]
        uuid_paths = [f[1:] for f in uuid_fields]
        text_fields = [f for f in fields if f not in uuid_fields]
        if not term:
            return queryset, False
        if uuid_paths:
            try:
                wanted = uuid.UUID(term)
            except ValueError:
                wanted = None
            if wanted is not None:
                return queryset.filter(Q.create([(p, wanted) for p in uuid_paths], connector=Q.OR)), False
        if not text_fields:
            # Nothing but external ids to search, and the term is not one: match nothing rather
            # than scan millions of event rows.
            return queryset.none(), False
        # Every word must appear in one of the text fields, as in Django's own search.
        for word in smart_split(term):
            queryset = queryset.filter(Q.create([(_text_lookup(f), word) for f in text_fields], connector=Q.OR))
        return queryset, False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST" and "action" in request.POST:
            requested = request.POST["action"]
            known = {name for _func, name, _desc in self._get_base_actions()}
            # Django drops an action the user may not run and re-renders the list as if nothing
            # happened; say "forbidden" so a moderator (or a script) knows it did not run.
            if requested in known and requested not in self.get_actions(request):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)


class ReadOnlyAdmin(PatraModelAdmin):
    """View permission as normal; no add, change or delete for anyone, superusers included."""

    list_per_page = EVENTS_PER_PAGE
    # No COUNT(*) of the whole table on every page view.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
