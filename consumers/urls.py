from django.urls import path

from . import api, kafka_api

_GROUP = "api/v1/streams/<slug:slug>/consumer-groups/<slug:group>"
_WEBHOOK = "api/v1/streams/<slug:slug>/webhooks/<int:webhook_id>"
_KAFKA = "api/v1/streams/<slug:slug>/kafka"

urlpatterns = [
    path("api/v1/streams/<slug:slug>/consumer-groups", api.GroupListView.as_view(), name="consumer-groups"),
    path(_GROUP, api.GroupDetailView.as_view(), name="consumer-group"),
    path(f"{_GROUP}/poll", api.PollView.as_view(), name="consumer-group-poll"),
    path(f"{_GROUP}/commit", api.CommitView.as_view(), name="consumer-group-commit"),
    path(f"{_GROUP}/seek", api.SeekView.as_view(), name="consumer-group-seek"),
    path(f"{_GROUP}/pause", api.PauseView.as_view(), name="consumer-group-pause"),
    path(f"{_GROUP}/resume", api.ResumeView.as_view(), name="consumer-group-resume"),
    path("api/v1/streams/<slug:slug>/webhooks", api.WebhookListView.as_view(), name="webhooks"),
    path(_WEBHOOK, api.WebhookDetailView.as_view(), name="webhook"),
    path(f"{_WEBHOOK}/enable", api.WebhookEnableView.as_view(), name="webhook-enable"),
    path(f"{_WEBHOOK}/test", api.WebhookTestView.as_view(), name="webhook-test"),
    path(f"{_WEBHOOK}/deliveries", api.WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
    path(f"{_KAFKA}/sinks", kafka_api.SinkListView.as_view(), name="kafka-sinks"),
    path(f"{_KAFKA}/sinks/<int:sink_id>", kafka_api.SinkDetailView.as_view(), name="kafka-sink"),
    path(f"{_KAFKA}/sources", kafka_api.SourceListView.as_view(), name="kafka-sources"),
    path(f"{_KAFKA}/sources/<int:source_id>", kafka_api.SourceDetailView.as_view(), name="kafka-source"),
]
