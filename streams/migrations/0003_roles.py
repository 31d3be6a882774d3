"""Creates the roles (Admin, Developer, Analyst, Operator, Consumer) with their permissions.

The permissions themselves are normally created after migrate; they are created
here first so that the roles hold them from the start. ``roles_sync`` keeps the
roles exact after every later migrate.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

from eventflow.roles import ROLE_PERMISSIONS


def create_roles(apps, schema_editor):
    for label in ("streams", "ingestion"):
        create_permissions(global_apps.get_app_config(label), verbosity=0, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if found is not None:
                group.permissions.add(found)


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0002_teams_permissions_key_limit"),
        ("ingestion", "0004_inbox_first_failed_at"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
