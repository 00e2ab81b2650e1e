"""Create the staff groups: support (lookups, rules, events) and ML (models, training, deployment)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# app label -> model -> actions granted. Support reads the lookup and the inbox (retrying failed
# events needs change on events) and manages rules; ML trains (add a training run), deploys and
# rolls back (add a deployment) and reads the registry.
GROUP_PERMISSIONS = {
    "support": {
        "lookup": {
            "overriderule": ("view", "add", "change", "delete"),
            "lookupexpense": ("view",),
            "expenseevent": ("view", "change"),
        },
    },
    "ML": {
        "mlops": {
            "modelversion": ("view",),
            "trainingrun": ("view", "add"),
            "datasetsnapshot": ("view", "add"),
            "deployment": ("view", "add"),
        },
    },
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations run; create them now so the groups
    # can hold them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, by_app in GROUP_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, by_model in by_app.items():
            codenames = [f"{action}_{model}" for model, actions in by_model.items() for action in actions]
            permissions = permission_model.objects.filter(content_type__app_label=app_label, codename__in=codenames)
            if permissions.count() != len(codenames):
                raise RuntimeError(f"Missing permissions for group {name}: expected {sorted(codenames)}.")
            group.permissions.add(*permissions)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUP_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("lookup", "0002_overriderule_conditions"),
        ("mlops", "0002_snapshots_and_deployments"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
