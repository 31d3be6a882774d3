"""Dead letters over HTTP: list across the caller's streams, show, replay and discard (one or many).

Every view needs ``operate`` (Operators, Admins). The letters of streams the
caller does not operate are never listed and answer 404, like ones that do
not exist.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from eventflow.api import ApiView, NameField, TextField, cursor_pagination, paginated_response, parse_input, parse_query
from eventflow.errors import json_response
from eventflow.openapi import error_responses, paginated

from .access import Action, Caller, stream_ids_for
from .dead_letters import (
    MAX_BULK_IDS,
    SKIP_REASONS,
    ActionOutcome,
    DeadLetterFilters,
    dead_letter_discard,
    dead_letter_get,
    dead_letter_replay,
    dead_letter_webhook_id,
    dead_letters_discard,
    dead_letters_list,
    dead_letters_replay,
)
from .models import DeadLetter, DeadLetterStage, DeadLetterStatus

_TAGS = ["dead letters"]
_ID = OpenApiParameter("letter_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The dead letter's id.")
MAX_ID = 2**63 - 1

DeadLetterPagination = cursor_pagination("-id", size=100, max_size=500)


def _operated(caller: Caller) -> frozenset[int] | None:
    return stream_ids_for(caller, Action.OPERATE)


class DeadLetterOut(serializers.Serializer):
    id = serializers.IntegerField()
    stream = serializers.CharField(source="stream.slug", help_text="The stream's slug.")
    event_id = serializers.CharField()
    stage = serializers.ChoiceField(DeadLetterStage.choices)
    status = serializers.ChoiceField(DeadLetterStatus.choices)
    error_class = serializers.CharField()
    error_message = serializers.CharField()
    attempts = serializers.IntegerField()
    log_offset = serializers.IntegerField(allow_null=True, help_text="consume and deliver: the log entry's offset.")
    group = serializers.SerializerMethodField(help_text="consume: the consumer group's name; null once deleted.")
    webhook_id = serializers.SerializerMethodField(help_text="deliver: the webhook subscription; null once deleted.")
    subscriber = serializers.CharField(help_text="The group's name when the letter was made.")
    first_failed_at = serializers.DateTimeField()
    last_failed_at = serializers.DateTimeField()
    acted_by = serializers.CharField(source="acted_by.username", allow_null=True, default=None)
    acted_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_group(self, letter: DeadLetter) -> str | None:
        return None if letter.group is None else letter.group.name

    def get_webhook_id(self, letter: DeadLetter) -> int | None:
        return dead_letter_webhook_id(letter)


# drf-spectacular types SerializerMethodFields from these.
DeadLetterOut.get_group.__annotations__["return"] = "str | None"
DeadLetterOut.get_webhook_id.__annotations__["return"] = "int | None"


class DeadLetterDetailOut(DeadLetterOut):
    event = serializers.JSONField(help_text="The event as it entered the failing stage.")
    payload = serializers.JSONField(source="event.payload", default=None, help_text="The event's payload.")
    traceback = serializers.CharField()


# "from" is a Python keyword, so the query's serializer is built from a dict.
DeadLetterQuery: type[serializers.Serializer] = type(
    "DeadLetterQuery",
    (serializers.Serializer,),
    {
        "stream": NameField(r"^[a-z0-9][a-z0-9-]{0,63}$", required=False, help_text="A stream's slug."),
        "stage": serializers.ChoiceField(DeadLetterStage.values, required=False),
        "status": serializers.ChoiceField(DeadLetterStatus.values, required=False),
        "q": TextField(required=False, max_length=200, help_text="Text in the error, or the event id."),
        "from": serializers.DateTimeField(required=False, help_text="Last failure at or after (ISO 8601)."),
        "to": serializers.DateTimeField(required=False, help_text="Last failure before (ISO 8601)."),
        "limit": serializers.IntegerField(required=False, min_value=1, max_value=500, help_text="Page size."),
        "cursor": serializers.CharField(required=False, help_text="From a page's next or previous link."),
    },
)


class BulkIn(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        min_length=1,
        max_length=MAX_BULK_IDS,
        help_text=f"Dead letter ids, at most {MAX_BULK_IDS}.",
    )


class SkippedOut(serializers.Serializer):
    id = serializers.IntegerField()
    reason = serializers.ChoiceField(
        list(SKIP_REASONS),
        help_text="not_found also stands for a letter of a stream you do not operate.",
    )
    message = serializers.CharField()


class BulkOut(serializers.Serializer):
    count = serializers.IntegerField(help_text="How many letters were acted on.")
    ids = serializers.ListField(child=serializers.IntegerField(), help_text="The letters acted on.")
    skipped = SkippedOut(many=True, help_text="The letters left alone, and why.")


def _bulk_out(outcome: ActionOutcome) -> dict[str, Any]:
    return {
        "count": outcome.count,
        "ids": outcome.acted,
        "skipped": [{"id": s.id, "reason": s.reason, "message": s.message} for s in outcome.skipped],
    }


class DeadLetterListView(ApiView):
    access = Action.OPERATE

    @extend_schema(
        operation_id="dead_letters_list",
        summary="List the dead letters of the streams you operate, the most recently recorded first",
        description=(
            "Letters of every stage: validate, enrich, append (processing), consume (consumer groups) and "
            "deliver (webhooks). Filters combine; `q` looks in the error class and message, or matches the "
            "event id. Cursor-paginated (`next`, `previous`)."
        ),
        tags=_TAGS,
        parameters=[DeadLetterQuery],
        responses={200: paginated(DeadLetterOut), **error_responses(400, 401, 403, 429)},
    )
    def get(self, request: Request) -> Response:
        query = parse_query(request, DeadLetterQuery)
        filters = DeadLetterFilters(
            stream=query.get("stream"),
            stage=query.get("stage"),
            status=query.get("status"),
            q=query.get("q"),
            since=query.get("from"),
            until=query.get("to"),
        )
        letters = dead_letters_list(stream_ids=_operated(self.caller), filters=filters)
        return paginated_response(self, request, DeadLetterPagination, letters, DeadLetterOut)


class DeadLetterDetailView(ApiView):
    access = Action.OPERATE

    @extend_schema(
        operation_id="dead_letters_show",
        summary="Show a dead letter with its event, payload, error and traceback",
        tags=_TAGS,
        parameters=[_ID],
        responses={200: DeadLetterDetailOut, **error_responses(401, 403, 404, 429)},
    )
    def get(self, request: Request, letter_id: int) -> HttpResponse:
        letter = dead_letter_get(stream_ids=_operated(self.caller), letter_id=letter_id)
        return json_response(DeadLetterDetailOut(letter).data)


class DeadLetterReplayView(ApiView):
    access = Action.OPERATE

    @extend_schema(
        operation_id="dead_letters_replay",
        summary="Replay a dead letter where it failed",
        description=(
            "A processing letter goes back through processing; a consume letter is delivered to its consumer "
            "group again (before new records); a deliver letter is sent to its webhook again. 409 when the "
            "letter is no longer open (a second replay changes nothing), its group or webhook was deleted, "
            "retention removed its log entry, or (a processing or Kafka letter) its stream is archived: an "
            "archived stream takes no new events (`dead_letter_stream_archived`; the letter stays open)."
        ),
        tags=_TAGS,
        parameters=[_ID],
        request=None,
        responses={200: DeadLetterDetailOut, **error_responses(401, 403, 404, 409, 429)},
    )
    def post(self, request: Request, letter_id: int) -> HttpResponse:
        stream_ids = _operated(self.caller)
        dead_letter_replay(letter_id=letter_id, stream_ids=stream_ids, acted_by=self.caller.user, caller=self.caller)
        return json_response(DeadLetterDetailOut(dead_letter_get(stream_ids=stream_ids, letter_id=letter_id)).data)


class DeadLetterDiscardView(ApiView):
    access = Action.OPERATE

    @extend_schema(
        operation_id="dead_letters_discard",
        summary="Discard a dead letter: kept for the record, never replayed",
        description="409 when the letter is no longer open.",
        tags=_TAGS,
        parameters=[_ID],
        request=None,
        responses={200: DeadLetterDetailOut, **error_responses(401, 403, 404, 409, 429)},
    )
    def post(self, request: Request, letter_id: int) -> HttpResponse:
        stream_ids = _operated(self.caller)
        dead_letter_discard(letter_id=letter_id, stream_ids=stream_ids, acted_by=self.caller.user, caller=self.caller)
        return json_response(DeadLetterDetailOut(dead_letter_get(stream_ids=stream_ids, letter_id=letter_id)).data)


_BULK_EXAMPLE = OpenApiExample("three letters", request_only=True, value={"ids": [41, 42, 43]})


class DeadLetterBulkReplayView(ApiView):
    access = Action.OPERATE

    @extend_schema(
        operation_id="dead_letters_replay_many",
        summary="Replay many dead letters",
        description="Open letters are replayed; the answer lists the others with the reason each was skipped.",
        tags=_TAGS,
        request=BulkIn,
        responses={200: BulkOut, **error_responses(400, 401, 403, 413, 415, 429)},
        examples=[_BULK_EXAMPLE],
    )
    def post(self, request: Request) -> HttpResponse:
        data = parse_input(request, BulkIn)
        outcome = dead_letters_replay(
            ids=data["ids"], stream_ids=_operated(self.caller), acted_by=self.caller.user, caller=self.caller
        )
        return json_response(_bulk_out(outcome))


class DeadLetterBulkDiscardView(ApiView):
    access = Action.OPERATE

    @extend_schema(
        operation_id="dead_letters_discard_many",
        summary="Discard many dead letters",
        description="Open letters are discarded; the answer lists the others with the reason each was skipped.",
        tags=_TAGS,
        request=BulkIn,
        responses={200: BulkOut, **error_responses(400, 401, 403, 413, 415, 429)},
        examples=[_BULK_EXAMPLE],
    )
    def post(self, request: Request) -> HttpResponse:
        data = parse_input(request, BulkIn)
        outcome = dead_letters_discard(
            ids=data["ids"], stream_ids=_operated(self.caller), acted_by=self.caller.user, caller=self.caller
        )
        return json_response(_bulk_out(outcome))
