"""Activate a model version from the shell: ``manage.py activate_model VERSION_ID --reason TEXT``.

Acts as the system actor ``system:cli`` (whoever can run manage.py on a server already has every
power), and is audited like an activation from the admin.
"""

from __future__ import annotations

import getpass
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.models import ModelVersion
from registry.services import RegistryError, model_version_activate


class Command(BaseCommand):
    help = "Activate a model version (by its UUID); the previous active version is retired."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version_id", type=uuid.UUID)
        parser.add_argument("--reason", required=True, help="Why; kept in the audit log.")

    def handle(self, *args: Any, version_id: uuid.UUID, reason: str, **options: Any) -> None:
        version = ModelVersion.objects.select_related("tenant").filter(pk=version_id).first()
        if version is None:
            raise CommandError(f"No model version {version_id}.")
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        try:
            activated = model_version_activate(version=version, actor=f"system:cli ({user})", reason=reason)
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{activated.tenant.slug}: {activated.label} is now active.")
