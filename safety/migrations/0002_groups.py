from django.db import migrations

from accounts.groups import MODERATORS, grant


def forwards(apps, schema_editor):
    # Moderators work the queues: they read everything in safety and record decisions; they get
    # nothing in registry, so they can never change which model serves.
    grant(
        apps,
        MODERATORS,
        "safety",
        [
            "view_profilesafetyscore",
            "view_queueitem",
            "change_queueitem",
            "view_report",
            "view_block",
            "view_decision",
            "add_decision",
            "view_appeal",
            "change_appeal",
        ],
    )


class Migration(migrations.Migration):
    dependencies = [
        ("safety", "0001_initial"),
        ("recommender", "0002_default_tenant_and_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
