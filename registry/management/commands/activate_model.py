"""Activate a model version from the shell.

python manage.py activate_model VERSION --reason TEXT [--tenant SLUG]

``VERSION`` is a version id (UUID) or a label such as ``collaborative-v2``. Labels are numbered
per tenant and model type, so every tenant that registered two collaborative versions has a
``collaborative-v2``: with a label, ``--tenant`` is required when several tenants exist.

Acts as the system actor ``system:cli`` (whoever can run manage.py on a server already has every
power), and is audited like an activation from the admin. (A tenant's first version of each type
was activated automatically when it was registered; this command is for every later change.)
"""

from __future__ import annotations

import getpass
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.cli import tenant_or_only_one
from registry.models import ModelVersion
from registry.selectors import active_version, parse_version_label, version_by_label, version_get
from registry.services import RegistryError, model_version_activate


class Command(BaseCommand):
    help = (
        "Activate a model version, by id or by label (collaborative-v2; with several tenants also --tenant); the "
        "previously active version of its tenant and type is retired. Audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # dest is not "version": BaseCommand's --version option already uses that name
        parser.add_argument("target", metavar="VERSION", help="a version id (UUID) or label, e.g. collaborative-v2")
        parser.add_argument("--reason", required=True, help="Why; kept in the audit log.")
        parser.add_argument("--tenant", metavar="SLUG", help="the label's tenant (required when several tenants exist)")

    def handle(self, *args: Any, target: str, reason: str, tenant: str | None, **options: Any) -> None:
        version = _version(target, tenant)
        previous = active_version(tenant_id=version.tenant_id, model_type=version.model_type)
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        try:
            activated = model_version_activate(version=version, actor=f"system:cli ({user})", reason=reason)
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        retired = f" (was {previous.label}, now retired)" if previous is not None else ""
        self.stdout.write(f"{activated.tenant.slug}: {activated.label} is now active{retired}.")


def _version(given: str, tenant_slug: str | None) -> ModelVersion:
    """The version ``given`` names: an id (``--tenant``, if given, must be its tenant's) or a label."""
    if parse_version_label(given) is not None:
        tenant = tenant_or_only_one(tenant_slug, why=f"each tenant numbers its own versions, so {given} is ambiguous")
        found = version_by_label(tenant=tenant, label=given)
        if found is None:
            raise CommandError(f"Tenant {tenant.slug} has no model version {given}.")
        return found
    try:
        version_id = uuid.UUID(given)
    except ValueError:
        raise CommandError(
            f"{given!r} is neither a version id (UUID) nor a label such as collaborative-v2 "
            "(list them with `manage.py list_models`)."
        ) from None
    found = version_get(version_id=version_id)
    if found is None:
        raise CommandError(f"No model version {version_id}.")
    if tenant_slug and found.tenant.slug != tenant_slug:
        raise CommandError(f"{found.label} ({version_id}) is a version of {found.tenant.slug}, not of {tenant_slug}.")
    return found
