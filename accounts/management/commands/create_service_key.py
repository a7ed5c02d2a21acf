from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from accounts.services import service_key_create


class Command(BaseCommand):
    help = (
        "Create a tenant service key. The key is printed once, alone on the last line "
        "(only its hash is stored): KEY=$(python manage.py create_service_key --tenant default --name app | tail -1)"
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--name", required=True, help="a name to recognise the key by, unique per tenant")

    def handle(self, *args: Any, tenant: str, name: str, **options: Any) -> None:
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(
                f"No tenant {tenant!r}; create it with: python manage.py create_tenant {tenant} --name ..."
            )
        try:
            issued = service_key_create(tenant=found, name=name)
        except ValidationError as exc:
            raise CommandError("; ".join(" ".join(v) for v in exc.message_dict.values())) from exc
        self.stderr.write(f"Service key {name!r} for tenant {found.slug}; store it now, it is not shown again:")
        self.stdout.write(issued.raw)
