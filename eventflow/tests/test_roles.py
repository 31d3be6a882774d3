"""Roles: created by a data migration, kept exactly in sync with eventflow/roles.py after every migrate."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from eventflow.roles import ROLE_PERMISSIONS, roles_sync

pytestmark = pytest.mark.django_db


def _held(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_every_role_holds_exactly_its_permissions_after_migrate():
    for role, perms in ROLE_PERMISSIONS.items():
        assert _held(role) == set(perms), role


def test_sync_takes_away_what_a_role_no_longer_lists_and_gives_back_what_it_lost():
    analyst = Group.objects.get(name="Analyst")
    stray = Permission.objects.get(content_type__app_label="streams", codename="manage_stream")
    listed = Permission.objects.get(content_type__app_label="streams", codename="read_events")
    analyst.permissions.add(stray)
    analyst.permissions.remove(listed)
    roles_sync()
    assert _held("Analyst") == set(ROLE_PERMISSIONS["Analyst"])


def test_a_group_that_is_not_a_role_is_left_alone():
    other = Group.objects.create(name="Billing")
    other.permissions.add(Permission.objects.get(content_type__app_label="streams", codename="manage_stream"))
    roles_sync()
    assert other.permissions.count() == 1


def test_the_permission_decides_not_the_group_name(client):
    from django.contrib.auth.models import User

    from streams.access import Action, caller_for_user

    renamed = Group.objects.get(name="Developer")
    renamed.name = "Platform engineers"
    renamed.save()
    user = User.objects.create_user("p", password="a-long-password-1")
    user.groups.add(renamed)
    assert caller_for_user(user).holds(Action.MANAGE)
    assert not caller_for_user(user).holds(Action.ADMINISTER)
