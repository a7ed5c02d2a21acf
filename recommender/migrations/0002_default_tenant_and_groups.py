from django.db import migrations

from accounts.groups import ML_ADMINS, MODERATORS, grant


def forwards(apps, schema_editor):
    Tenant = apps.get_model("recommender", "Tenant")
    Tenant.objects.get_or_create(slug="default", defaults={"name": "Default tenant"})
    views = [f"view_{m}" for m in ("tenant", "profile", "swipe", "impression", "match", "elorating")]
    # Moderators look at profiles and their activity and change a profile's status.
    grant(apps, MODERATORS, "recommender", [*views, "change_profile"])
    # ML admins look at everything the models learn from; credentials stay with superusers.
    grant(apps, ML_ADMINS, "recommender", [*views, "view_servicekey"])


class Migration(migrations.Migration):
    dependencies = [
        ("recommender", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
