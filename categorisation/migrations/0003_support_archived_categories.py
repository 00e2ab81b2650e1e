"""Let the support group see, add and remove archived categories (view, add and delete)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "support"
CODENAMES = ("view_archivedcategory", "add_archivedcategory", "delete_archivedcategory")


def grant_permissions(apps, schema_editor):
    # Permissions are normally created after all migrations run; create the lookup app's now.
    app_config = apps.get_app_config("lookup")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name=GROUP)
    permissions = apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="lookup", codename__in=CODENAMES
    )
    if permissions.count() != len(CODENAMES):
        raise RuntimeError(f"Missing permissions for group {GROUP}: expected {sorted(CODENAMES)}.")
    group.permissions.add(*permissions)


def revoke_permissions(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=GROUP).first()
    if group is None:
        return
    permissions = apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="lookup", codename__in=CODENAMES
    )
    group.permissions.remove(*permissions)


class Migration(migrations.Migration):
    dependencies = [
        ("categorisation", "0002_api_tokens"),
        ("lookup", "0003_archivedcategory"),
    ]

    operations = [migrations.RunPython(grant_permissions, revoke_permissions)]
