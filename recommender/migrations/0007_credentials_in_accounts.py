# Tenant, ServiceKey and UserToken live in accounts now, in the same tables
# (accounts/migrations/0001_initial.py): recommender's foreign keys point at accounts.Tenant and
# the old models leave recommender's state. Django's state only: the database does not change.
# After registry's and safety's 0003, so no model points at the old Tenant when it goes.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("recommender", "0006_elo_baseline"),
        ("accounts", "0001_initial"),
        ("registry", "0003_tenant_in_accounts"),
        ("safety", "0003_tenant_in_accounts"),
    ]

    state_operations = [
        migrations.AlterField(
            model_name="profile",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="profiles", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="impression",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="swipe",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="match",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="elorating",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="profileembedding",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.tenant"
            ),
        ),
        migrations.AlterField(
            model_name="elobaseline",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.tenant"
            ),
        ),
        # Every foreign key to the old models now points at accounts.*: forget them (their tables
        # are accounts' now).
        migrations.DeleteModel(name="UserToken"),
        migrations.DeleteModel(name="ServiceKey"),
        migrations.DeleteModel(name="Tenant"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=state_operations, database_operations=[]),
    ]
