"""The staff groups and their permissions, granted by data migrations.

Each app's data migration calls :func:`grant` for its own models, so the groups always hold the
permissions of every installed model that their work needs. Superusers need no group.
"""

from __future__ import annotations

from typing import Any

MODERATORS = "Moderators"
ML_ADMINS = "ML admins"


def grant(apps: Any, group_name: str, app_label: str, codenames: list[str]) -> None:
    """Give ``group_name`` the permissions ``codenames`` of ``app_label`` (creating the group and,
    on a fresh database, the permissions, which Django otherwise only creates after migrate)."""
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config(app_label)
    # Migration app configs are stubs without models_module; create_permissions skips those.
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=group_name)
    perms = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
    missing = set(codenames) - set(perms.values_list("codename", flat=True))
    if missing:
        raise RuntimeError(f"permissions not found for {app_label}: {sorted(missing)}")
    group.permissions.add(*perms)
