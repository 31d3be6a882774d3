from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EventflowConfig(AppConfig):
    name = "eventflow"
    verbose_name = "EventFlow"

    def ready(self) -> None:
        from .roles import roles_sync

        # After every migrate, so the permissions the roles name exist.
        post_migrate.connect(roles_sync, dispatch_uid="eventflow.roles_sync")
