# The registry's tenant foreign keys point at accounts.Tenant, which took over recommender's Tenant
# and its table (accounts/migrations/0001_initial.py): a change of Django's state only, the
# columns and constraints in the database stay as they are.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0002_groups"),
        ("accounts", "0001_initial"),
    ]

    state_operations = [
        migrations.AlterField(
            model_name="modelslot",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="auditlog",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="experiment",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="taskrun",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="accounts.tenant"
            ),
        ),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=state_operations, database_operations=[]),
    ]
