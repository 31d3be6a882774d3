from django.urls import path

from . import api, erasure_api

_STREAM = "api/v1/streams/<slug:slug>"
_TYPE = f"{_STREAM}/schemas/<str:event_type>"

urlpatterns = [
    path("api/v1/streams", api.StreamListView.as_view(), name="streams"),
    path(_STREAM, api.StreamDetailView.as_view(), name="stream"),
    path(f"{_STREAM}/archive", api.StreamArchiveView.as_view(), name="stream-archive"),
    path(f"{_STREAM}/unarchive", api.StreamUnarchiveView.as_view(), name="stream-unarchive"),
    path(f"{_STREAM}/schemas", api.SchemaListView.as_view(), name="schemas"),
    path(_TYPE, api.SchemaTypeView.as_view(), name="schema-type"),
    path(f"{_TYPE}/validate", api.SchemaValidateView.as_view(), name="schema-validate"),
    path(f"{_TYPE}/<int:version>", api.SchemaVersionView.as_view(), name="schema-version"),
    # Privacy requests: a person's events redacted in place (streams/erasure.py).
    path(f"{_STREAM}/erasures", erasure_api.ErasureListView.as_view(), name="erasures"),
    path(f"{_STREAM}/erasures/<int:erasure_id>", erasure_api.ErasureDetailView.as_view(), name="erasure"),
    path("api/v1/keys", api.ApiKeyListView.as_view(), name="keys"),
    path("api/v1/keys/<int:key_id>", api.ApiKeyDetailView.as_view(), name="key"),
]
