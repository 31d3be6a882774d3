from django.urls import URLPattern, URLResolver, path

from . import dead_letter_api as api

_LETTERS = "api/v1/dead-letters"

urlpatterns: list[URLPattern | URLResolver] = [
    path(_LETTERS, api.DeadLetterListView.as_view(), name="dead-letters"),
    path(f"{_LETTERS}/replay", api.DeadLetterBulkReplayView.as_view(), name="dead-letters-replay"),
    path(f"{_LETTERS}/discard", api.DeadLetterBulkDiscardView.as_view(), name="dead-letters-discard"),
    path(f"{_LETTERS}/<int:letter_id>", api.DeadLetterDetailView.as_view(), name="dead-letter"),
    path(f"{_LETTERS}/<int:letter_id>/replay", api.DeadLetterReplayView.as_view(), name="dead-letter-replay"),
    path(f"{_LETTERS}/<int:letter_id>/discard", api.DeadLetterDiscardView.as_view(), name="dead-letter-discard"),
]
