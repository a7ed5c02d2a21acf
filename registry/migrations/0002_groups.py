from django.db import migrations

from accounts.groups import ML_ADMINS, grant


def forwards(apps, schema_editor):
    # ML admins run the registry: they see everything in it, draft experiments, start jobs, and
    # change what is served (the custom permission gates activation, rollback and experiments).
    grant(
        apps,
        ML_ADMINS,
        "registry",
        [
            "view_modelversion",
            "activate_modelversion",
            "view_auditlog",
            "view_experiment",
            "add_experiment",
            "change_experiment",
            "view_experimentarm",
            "add_experimentarm",
            "change_experimentarm",
            "delete_experimentarm",
            "view_taskrun",
            "add_taskrun",
        ],
    )


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0001_initial"),
        ("recommender", "0002_default_tenant_and_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
