from django.apps import AppConfig


class EventflowConfig(AppConfig):
    name = "eventflow"
    verbose_name = "EventFlow"
