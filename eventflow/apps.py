from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_migrate


class EventflowConfig(AppConfig):
    name = "eventflow"
    verbose_name = "EventFlow"

    def ready(self) -> None:
        # In ready(): the roles and the audit log import models, which can't load while the registry is loading.
        from .roles import roles_sync

        # After every migrate, so the permissions the roles name exist.
        post_migrate.connect(roles_sync, dispatch_uid="eventflow.roles_sync")

        from .audit import logged_in_record, login_failed_record

        # Logins and failed logins into the audit log, from every way to log in.
        user_logged_in.connect(logged_in_record, dispatch_uid="eventflow.audit_login")
        user_login_failed.connect(login_failed_record, dispatch_uid="eventflow.audit_login_failed")
