"""Dead letters of every stage: recorded, replayed and discarded (services), listed and shown (selectors).

Every stage that gives up on an event records it here with
``dead_letters_record``: processing (validate, enrich, append), consumer
groups (consume, after ``max_deliver``), webhooks (deliver) and Kafka sources
(source: a message the intake refused). A letter of a consumer group or
webhook links to that group.

Replay puts a letter back where it failed: a processing letter through the
inbox, a ``consume`` letter to its group, a ``deliver`` letter to its webhook.
A letter that would come in again as a new event (processing, ``source``) is
refused while its stream is archived, as the intake refuses new events then.
The app that owns a stage knows how, and registers its replayer here when it
starts (its ``AppConfig.ready``); this module, which those apps call, calls
them back only through that table, so no import runs in both directions.

Replay and discard act only on open letters, locked with ``SELECT … FOR
UPDATE`` and marked in the same transaction: a second replay of a letter, at
once or later, finds it replayed and does nothing, so it never makes a second
log entry or a second delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from eventflow.audit import audit_security
from eventflow.errors import Conflict, NotFound

from .models import PROCESSING_STAGES, DeadLetter, DeadLetterStage, DeadLetterStatus, Stream

ERROR_MESSAGE_CHARS = 10_000
TRACEBACK_CHARS = 20_000
# Most letters one bulk request may name.
MAX_BULK_IDS = 1000

# Why a letter named in a replay or discard was left alone.
SKIP_NOT_FOUND = "not_found"  # no such letter, or not on a stream the caller operates
SKIP_NOT_OPEN = "not_open"  # already replayed or discarded
SKIP_NOT_REPLAYABLE = "not_replayable"  # no replayer for its stage
SKIP_GROUP_GONE = "group_gone"  # its consumer group or webhook was deleted
SKIP_LOG_ENTRY_GONE = "log_entry_gone"  # retention removed the log entry it would deliver
SKIP_STILL_REJECTED = "still_rejected"  # the intake refused its message again
SKIP_STREAM_ARCHIVED = "stream_archived"  # its stream is archived: it takes no new events

SKIP_REASONS = {
    SKIP_NOT_FOUND: "No such dead letter.",
    SKIP_NOT_OPEN: "Already replayed or discarded.",
    SKIP_NOT_REPLAYABLE: "Letters of this stage cannot be replayed.",
    SKIP_GROUP_GONE: "Its consumer group or webhook no longer exists.",
    SKIP_LOG_ENTRY_GONE: "Its log entry was removed by retention.",
    SKIP_STILL_REJECTED: "The intake still refuses its message; the letter shows the new error.",
    SKIP_STREAM_ARCHIVED: "Its stream is archived and takes no new events; unarchive it to replay.",
}

# Stages whose replay puts the event in again as new (through the inbox or the intake): an
# archived stream refuses those, as its intake does. A consume or deliver letter sends again
# what the log holds, which stays readable.
_INTAKE_STAGES = frozenset({*PROCESSING_STAGES, DeadLetterStage.SOURCE})


@dataclass(frozen=True)
class DeadLetterIn:
    """One failure as a stage records it."""

    stream_id: int
    event_id: str
    # The event as it entered the failing stage (the inbox row or the log entry).
    event: dict[str, Any]
    stage: str
    error_class: str
    error_message: str = ""
    traceback: str = ""
    attempts: int = 1
    first_failed_at: datetime | None = None
    group_id: int | None = None
    subscriber: str = ""
    log_offset: int | None = None


def dead_letters_record(
    *, letters: Sequence[DeadLetterIn], now: datetime | None = None, skip_recorded: bool = False
) -> int:
    """Write the failures of a stage in one statement; runs in the caller's transaction. Returns how many.

    ``skip_recorded``: a letter that a unique index says is recorded already (a Kafka
    source's, named by its message) is left out instead of failing the statement.
    """
    if not letters:
        return 0
    now = now or timezone.now()
    DeadLetter.objects.bulk_create(
        [
            DeadLetter(
                stream_id=letter.stream_id,
                event_id=letter.event_id,
                event=letter.event,
                stage=letter.stage,
                group_id=letter.group_id,
                subscriber=letter.subscriber,
                log_offset=letter.log_offset,
                error_class=letter.error_class[:200],
                error_message=letter.error_message[:ERROR_MESSAGE_CHARS],
                traceback=letter.traceback[-TRACEBACK_CHARS:],
                attempts=letter.attempts,
                first_failed_at=letter.first_failed_at or now,
                last_failed_at=now,
            )
            for letter in letters
        ],
        batch_size=500,
        ignore_conflicts=skip_recorded,
    )
    return len(letters)


# --- replay and discard ---------------------------------------------------------------------

# Puts open, locked letters of one stage back where they failed, inside the
# replay's transaction (side effects after commit). Returns the letters it
# could not replay, with a SKIP_* reason; those stay open.
Replayer = Callable[[list[DeadLetter]], dict[int, str]]

_replayers: dict[str, Replayer] = {}


def dead_letter_replayer_register(*, stages: Iterable[str], replayer: Replayer) -> None:
    """Called by the app that owns ``stages`` when it starts."""
    for stage in stages:
        _replayers[str(stage)] = replayer


def dead_letter_replayable(stage: str) -> bool:
    return stage in _replayers


@dataclass(frozen=True)
class Skipped:
    id: int
    reason: str

    @property
    def message(self) -> str:
        return SKIP_REASONS[self.reason]


@dataclass
class ActionOutcome:
    """What a replay or discard did: the letters it acted on, and those it left alone and why."""

    acted: list[int] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.acted)


def _scoped(letters: QuerySet[DeadLetter], stream_ids: frozenset[int] | None) -> QuerySet[DeadLetter]:
    return letters if stream_ids is None else letters.filter(stream_id__in=stream_ids)


def _unique(ids: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(pk) for pk in ids))


def _lock_open(ids: list[int], stream_ids: frozenset[int] | None, outcome: ActionOutcome) -> list[DeadLetter]:
    """The open letters among ``ids`` in scope, locked; the others are noted as skipped."""
    letters = list(
        _scoped(DeadLetter.objects.select_for_update(of=("self",)), stream_ids)
        .filter(pk__in=ids, status=DeadLetterStatus.OPEN)
        .order_by("pk")
    )
    found = {letter.pk for letter in letters}
    rest = [pk for pk in ids if pk not in found]
    if rest:
        closed = set(_scoped(DeadLetter.objects.filter(pk__in=rest), stream_ids).values_list("pk", flat=True))
        outcome.skipped += [Skipped(pk, SKIP_NOT_OPEN if pk in closed else SKIP_NOT_FOUND) for pk in rest]
    return letters


def _audit(*, action: str, letters: list[DeadLetter], caller: Any, acted_by: Any) -> None:
    """Security events of a replay or discard, in the transaction that changed the letters: one per stream."""
    by_stream: dict[int, list[DeadLetter]] = {}
    for letter in letters:
        by_stream.setdefault(letter.stream_id, []).append(letter)
    for stream_id, of_stream in by_stream.items():
        ids = [letter.pk for letter in of_stream]
        audit_security(
            action=action,
            caller=caller,
            user=acted_by,
            stream_id=stream_id,
            target=f"dead_letter:{ids[0]}" if len(ids) == 1 else f"dead_letters:{len(ids)}",
            details={"ids": ids, "stages": sorted({letter.stage for letter in of_stream})},
        )


def _archived(letters: list[DeadLetter]) -> dict[int, str]:
    """The letters that would go in again as new events to a stream that is archived now."""
    coming_in = {letter.stream_id for letter in letters if letter.stage in _INTAKE_STAGES}
    if not coming_in:
        return {}
    # Read now, not from the streams' cache of a few seconds: a replay right after archiving must see it.
    archived = set(Stream.objects.filter(pk__in=coming_in, archived_at__isnull=False).values_list("pk", flat=True))
    return {
        letter.pk: SKIP_STREAM_ARCHIVED
        for letter in letters
        if letter.stage in _INTAKE_STAGES and letter.stream_id in archived
    }


def dead_letters_replay(
    *,
    ids: Iterable[int],
    stream_ids: frozenset[int] | None = None,
    acted_by: Any = None,
    caller: Any = None,
) -> ActionOutcome:
    """Put open letters back where they failed, and mark them replayed.

    ``stream_ids`` limits the letters to the streams the caller may operate
    (None: every stream); others are skipped as not found. Idempotent.
    """
    wanted = _unique(ids)
    outcome = ActionOutcome()
    now = timezone.now()
    with transaction.atomic():
        letters = _lock_open(wanted, stream_ids, outcome)
        refused = _archived(letters)
        by_stage: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            if letter.pk not in refused:
                by_stage.setdefault(letter.stage, []).append(letter)
        for stage, of_stage in by_stage.items():
            replayer = _replayers.get(stage)
            if replayer is None:
                refused.update((letter.pk, SKIP_NOT_REPLAYABLE) for letter in of_stage)
            else:
                refused.update(replayer(of_stage))
        replayed = [letter for letter in letters if letter.pk not in refused]
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in replayed]).update(
            status=DeadLetterStatus.REPLAYED, acted_by=acted_by, acted_at=now
        )
        _audit(action="dead_letter.replay", letters=replayed, caller=caller, acted_by=acted_by)
    outcome.acted = [letter.pk for letter in replayed]
    outcome.skipped += [Skipped(pk, reason) for pk, reason in refused.items()]
    outcome.skipped.sort(key=lambda skipped: wanted.index(skipped.id))
    return outcome


def dead_letters_discard(
    *,
    ids: Iterable[int],
    stream_ids: frozenset[int] | None = None,
    acted_by: Any = None,
    caller: Any = None,
) -> ActionOutcome:
    """Mark open letters discarded: kept for the record, never replayed. Idempotent."""
    wanted = _unique(ids)
    outcome = ActionOutcome()
    with transaction.atomic():
        letters = _lock_open(wanted, stream_ids, outcome)
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
            status=DeadLetterStatus.DISCARDED, acted_by=acted_by, acted_at=timezone.now()
        )
        _audit(action="dead_letter.discard", letters=letters, caller=caller, acted_by=acted_by)
    outcome.acted = [letter.pk for letter in letters]
    return outcome


def dead_letters_delete(
    *,
    ids: Iterable[int],
    stream_ids: frozenset[int] | None = None,
    acted_by: Any = None,
    caller: Any = None,
) -> int:
    """Delete letters for good, whatever their status (superusers, in Django admin). Returns how many.

    Unlike discard, nothing of the event is kept: the security event of each stream names the letters.
    """
    with transaction.atomic():
        letters = list(
            _scoped(DeadLetter.objects.select_for_update(of=("self",)), stream_ids)
            .filter(pk__in=_unique(ids))
            .order_by("pk")
        )
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).delete()
        _audit(action="dead_letter.delete", letters=letters, caller=caller, acted_by=acted_by)
    return len(letters)


def _refused(outcome: ActionOutcome) -> None:
    """The domain error of a one-letter action that left its letter alone."""
    if not outcome.skipped:
        return
    skipped = outcome.skipped[0]
    if skipped.reason == SKIP_NOT_FOUND:
        raise NotFound("dead_letter_not_found", "No such dead letter.")
    raise Conflict(f"dead_letter_{skipped.reason}", skipped.message, {"id": skipped.id, "reason": skipped.reason})


def dead_letter_replay(
    *, letter_id: int, stream_ids: frozenset[int] | None = None, acted_by: Any = None, caller: Any = None
) -> None:
    """Replay one letter; ``NotFound`` or ``Conflict`` (not open, group gone, log entry gone, stream archived)."""
    _refused(dead_letters_replay(ids=[letter_id], stream_ids=stream_ids, acted_by=acted_by, caller=caller))


def dead_letter_discard(
    *, letter_id: int, stream_ids: frozenset[int] | None = None, acted_by: Any = None, caller: Any = None
) -> None:
    """Discard one letter; ``NotFound``, or ``Conflict`` if it is not open."""
    _refused(dead_letters_discard(ids=[letter_id], stream_ids=stream_ids, acted_by=acted_by, caller=caller))


# --- reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterFilters:
    stream: str | None = None  # a stream's slug
    group: str | None = None  # a consumer group's name (the letters it made)
    stage: str | None = None
    status: str | None = None
    q: str | None = None  # text in the error class or message, or the event id
    since: datetime | None = None  # last failure at or after
    until: datetime | None = None  # last failure before


def dead_letters_of(*, stream_ids: frozenset[int] | None) -> QuerySet[DeadLetter]:
    """Every letter on the given streams (None: all), with what a list or a page shows of them."""
    return _scoped(DeadLetter.objects.all(), stream_ids).select_related("stream", "group__webhook", "acted_by")


def dead_letters_list(*, stream_ids: frozenset[int] | None, filters: DeadLetterFilters) -> QuerySet[DeadLetter]:
    letters = dead_letters_of(stream_ids=stream_ids)
    if filters.stream is not None:
        letters = letters.filter(stream__slug=filters.stream)
    if filters.group is not None:
        letters = letters.filter(group__name=filters.group)
    if filters.stage is not None:
        letters = letters.filter(stage=filters.stage)
    if filters.status is not None:
        letters = letters.filter(status=filters.status)
    if filters.q:
        letters = letters.filter(
            Q(error_message__icontains=filters.q) | Q(error_class__icontains=filters.q) | Q(event_id=filters.q)
        )
    if filters.since is not None:
        letters = letters.filter(last_failed_at__gte=filters.since)
    if filters.until is not None:
        letters = letters.filter(last_failed_at__lt=filters.until)
    return letters


def dead_letter_get(*, stream_ids: frozenset[int] | None, letter_id: int) -> DeadLetter:
    """One letter on the given streams; any other answers exactly like one that does not exist."""
    letter = dead_letters_of(stream_ids=stream_ids).filter(pk=letter_id).first()
    if letter is None:
        raise NotFound("dead_letter_not_found", "No such dead letter.")
    return letter


def dead_letter_webhook_id(letter: DeadLetter) -> int | None:
    """The webhook a ``deliver`` letter was for, read through ``dead_letters_of``'s joins."""
    group = letter.group
    if group is None:
        return None
    webhook = getattr(group, "webhook", None)
    return None if webhook is None else int(webhook.pk)
