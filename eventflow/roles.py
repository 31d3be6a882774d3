"""Roles are Django groups holding permissions; the permission codenames decide, never a group's name.

``roles_sync`` runs after every migrate and makes each role hold exactly the
permissions listed here: it adds what is missing and takes away what a role no
longer lists. People get roles through the people API or Django admin; what a
role allows on a stream is decided in ``streams/access.py``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

_STREAM_ACTIONS = [
    "streams.send_events",
    "streams.read_events",
    "streams.consume_stream",
    "streams.manage_stream",
    "streams.operate_stream",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    # Everything, including people, teams and the audit log.
    "Admin": [
        *_STREAM_ACTIONS,
        "streams.administer_people",
        "streams.view_stream",
        "streams.add_stream",
        "streams.change_stream",
        "streams.view_team",
        "streams.add_team",
        "streams.change_team",
        "streams.view_eventschema",
        "streams.add_eventschema",
        "streams.view_apikey",
        "streams.add_apikey",
        "streams.change_apikey",
        "streams.view_deadletter",
        "streams.change_deadletter",
    ],
    # Streams, schemas, keys, consumer groups and webhooks of their teams' streams.
    "Developer": [
        "streams.send_events",
        "streams.read_events",
        "streams.consume_stream",
        "streams.manage_stream",
        "streams.view_stream",
        "streams.change_stream",
        "streams.view_eventschema",
        "streams.add_eventschema",
        "streams.view_apikey",
        "streams.add_apikey",
        "streams.change_apikey",
    ],
    # Events, explorers and analytics of their teams' streams.
    "Analyst": ["streams.read_events", "streams.view_stream", "streams.view_eventschema"],
    # Processing health and the dead letters of their teams' streams.
    "Operator": [
        "streams.operate_stream",
        "streams.view_stream",
        "streams.view_deadletter",
        "streams.change_deadletter",
    ],
    # People's programs that read their teams' streams through consumer groups (JWT).
    "Consumer": ["streams.consume_stream", "streams.view_stream"],
}


def roles_sync(**_: Any) -> None:
    """Make every role hold exactly its listed permissions."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=role)
        wanted = set()
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if found is not None:
                wanted.add(found.pk)
        held = set(group.permissions.values_list("pk", flat=True))
        if held - wanted:
            group.permissions.remove(*(held - wanted))
        if wanted - held:
            group.permissions.add(*(wanted - held))
