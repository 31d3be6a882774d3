"""Roles are Django groups with a fixed set of permissions, kept in sync after every migrate."""

from __future__ import annotations

from typing import Any

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Manages streams, schemas, keys, consumer groups and webhooks.
    "Admin": [
        "streams.view_stream",
        "streams.add_stream",
        "streams.change_stream",
        "streams.view_eventschema",
        "streams.add_eventschema",
        "streams.change_eventschema",
        "streams.view_apikey",
        "streams.change_apikey",
        "ingestion.view_deadletter",
        "ingestion.change_deadletter",
    ],
    # Reads explorers, charts, funnels and journeys.
    "Analyst": ["streams.view_stream", "streams.view_eventschema"],
    # People's programs that read streams through consumer groups (JWT).
    "Consumer": ["streams.view_stream"],
    # Watches processing health and works the dead letter queue.
    "Operator": ["streams.view_stream", "ingestion.view_deadletter", "ingestion.change_deadletter"],
}


def roles_sync(**_: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    for role, perms in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if found is not None:
                wanted.append(found)
        group.permissions.add(*wanted)
