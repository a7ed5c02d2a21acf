# The content types (and so the permissions, which the staff groups hold, and the admin's log
# entries) of the three models that moved from recommender follow them to accounts: renamed, not
# recreated, so Moderators keep "view tenant" and ML admins "view service key" under the new label.

from django.db import migrations

MOVED = ("tenant", "servicekey", "usertoken")


def _relabel(apps, old_label, new_label):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        old = ContentType.objects.filter(app_label=old_label, model=model).first()
        if old is None:
            continue  # a database whose content types were never created: post_migrate creates them
        # A content type already created under the new label (post_migrate of a partial run) holds
        # no grants of the groups' migrations: the one that does wins.
        ContentType.objects.filter(app_label=new_label, model=model).delete()
        old.app_label = new_label
        old.save(update_fields=["app_label"])
    ContentType.objects.clear_cache()


def forwards(apps, schema_editor):
    _relabel(apps, "recommender", "accounts")


def backwards(apps, schema_editor):
    _relabel(apps, "accounts", "recommender")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("recommender", "0002_default_tenant_and_groups"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
