"""The Kafka bridge's writes: sinks and sources made, changed and removed; who runs them; how they fare.

A **sink** publishes a stream's log to a topic. It reads the log through a
consumer group of its own (kind ``kafka``), exactly as a webhook does: the
group's lease holds a batch while it is sent, and the group's position moves
only once the broker acknowledged every message of it (consumers/kafka_sink.py).
Its ``max_deliver`` is the largest a group may have and it stops rather than
dead-letters, so a broker outage never skips an event.

A **source** takes a topic's messages into a stream through the intake
(``ingestion.services.events_ingest``) as a Kafka consumer group whose offsets
live in the broker (consumers/kafka_source.py).

Each is run by one bridge process at a time (consumers/kafka_bridge.py): a
process holds a sink or source by writing its name and an expiry on the row,
renews it while it runs, and gives it back when it stops; another process
takes over once the expiry passes. The runner is a lease, not a lock: a
process that stalls past it may briefly overlap another, which the consumer
group's lease (sinks) and the broker's group membership (sources) keep from
doing harm.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from eventflow import conf
from eventflow.errors import Conflict, Invalid
from ingestion.services import REJECTED, events_ingest
from streams.dead_letters import SKIP_STILL_REJECTED, DeadLetterIn, dead_letters_record
from streams.log import log_head
from streams.models import DeadLetter, DeadLetterStage, Stream
from streams.selectors import stream_info_load

from .models import (
    ConsumerGroup,
    GroupKind,
    KafkaBridge,
    KafkaBridgeStatus,
    KafkaSink,
    KafkaSource,
    MaxDeliverPolicy,
)
from .selectors import Position, log_position_resolve
from .services import consumer_group_seek

# A sink never gives up on an event: its group would stop (never dead-letter) after this many hand-outs.
SINK_MAX_DELIVER = 2**31 - 1
RECENT_REJECTIONS = 20
# Kafka's own limit on a topic's name; an event_id is at most 128 characters.
EVENT_ID_MAX = 128

BridgeModel = TypeVar("BridgeModel", KafkaSink, KafkaSource)
AnyBridge = TypeVar("AnyBridge", bound=KafkaBridge)

# The connection fields a sink or source may set; empty ones take the KAFKA_* settings.
CONNECTION_FIELDS = (
    "bootstrap_servers",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca_pem",
)


class BrokerUnconfigured(Invalid):
    def __init__(self) -> None:
        super().__init__(
            "kafka_unconfigured",
            "No broker address: give bootstrap_servers, or set KAFKA_BOOTSTRAP_SERVERS.",
            {"bootstrap_servers": "required"},
        )


def kafka_client_config(bridge: KafkaBridge) -> dict[str, Any]:
    """The librdkafka settings of a sink's producer or a source's consumer: the row's, else the KAFKA_* settings."""
    settings = conf.get()
    servers = bridge.bootstrap_servers or settings.kafka_bootstrap_servers
    if not servers:
        raise BrokerUnconfigured()
    protocol = bridge.security_protocol or settings.kafka_security_protocol
    config: dict[str, Any] = {"bootstrap.servers": servers, "security.protocol": protocol}
    if protocol.startswith("SASL"):
        config["sasl.mechanism"] = bridge.sasl_mechanism or settings.kafka_sasl_mechanism
        config["sasl.username"] = bridge.sasl_username or settings.kafka_sasl_username
        config["sasl.password"] = bridge.sasl_password or settings.kafka_sasl_password
    if protocol.endswith("SSL"):
        if bridge.ssl_ca_pem:
            config["ssl.ca.pem"] = bridge.ssl_ca_pem
        elif settings.kafka_ssl_ca_location:
            config["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return config


def source_event_id(*, topic: str, partition: int, offset: int) -> str:
    """The event_id of a message that has none: the same message read twice is the same event.

    A topic name may be longer than an event_id allows (249 against 128): a
    long one is replaced by a digest of it.
    """
    event_id = f"kafka:{topic}:{partition}:{offset}"
    if len(event_id) <= EVENT_ID_MAX:
        return event_id
    digest = hashlib.sha256(topic.encode()).hexdigest()[:32]
    return f"kafka:{digest}:{partition}:{offset}"


def _connection_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {name: values[name] for name in CONNECTION_FIELDS if name in values and values[name] is not None}


# One broker address as librdkafka reads it: [protocol://]host[:port], the host a name, an IPv4 address or
# an [IPv6] one. A list is comma-separated.
_BROKER_RE = re.compile(
    r"(?:(?:PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)://)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE,
)


def _check_servers(servers: str) -> None:
    """A broker list the client can read: a mistyped one is refused when saved, not found by the bridge later."""
    for entry in servers.split(","):
        match = _BROKER_RE.fullmatch(entry.strip())
        if match is None or (match["port"] is not None and not 1 <= int(match["port"]) <= 65535):
            raise Invalid(
                "invalid_bootstrap_servers",
                "bootstrap_servers is a comma-separated list of host:port (a name, an IPv4 address or an [IPv6] one, "
                "a port from 1 to 65535).",
                {"bootstrap_servers": entry.strip()[:100]},
            )


# Kafka's rule for a topic's name: these characters, at most 249 of them, and never "." or ".." alone.
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _check_topic(topic: str) -> None:
    """A topic the broker would refuse is refused when saved, not found paused by the bridge later."""
    if not _TOPIC_RE.fullmatch(topic) or topic in (".", ".."):
        raise Invalid(
            "invalid_topic",
            'A topic name is 1 to 249 letters, digits, ".", "_" or "-", and not "." or ".." alone.',
            {"topic": topic[:300]},
        )


def _check_connection(fields: dict[str, Any]) -> None:
    if not fields.get("bootstrap_servers") and not conf.get().kafka_bootstrap_servers:
        raise BrokerUnconfigured()
    if fields.get("bootstrap_servers"):
        _check_servers(fields["bootstrap_servers"])


# --- sinks ------------------------------------------------------------------------------------------


def kafka_sink_create(
    *,
    stream_id: int,
    topic: str,
    key: str,
    start: Position,
    batch_size: int = 500,
    description: str = "",
    **connection: Any,
) -> KafkaSink:
    """Publish the stream's log to ``topic`` from ``start`` on (its own consumer group holds the position)."""
    _check_topic(topic)
    fields = _connection_fields(connection)
    _check_connection(fields)
    offset = log_position_resolve(stream_id=stream_id, position=start, head=log_head(stream_id))
    with transaction.atomic():
        group = ConsumerGroup.objects.create(
            stream_id=stream_id,
            name=f"kafka-pending:{timezone.now().timestamp()}:{topic}"[:100],
            kind=GroupKind.KAFKA,
            committed_offset=offset,
            max_deliver=SINK_MAX_DELIVER,
            on_max_deliver=MaxDeliverPolicy.STOP,
        )
        sink = KafkaSink.objects.create(
            stream_id=stream_id,
            group=group,
            topic=topic,
            key=key,
            batch_size=batch_size,
            description=description,
            **fields,
        )
        # The group's name, as metrics and the consumer lag show it.
        group.name = f"kafka:{sink.pk}"
        group.save(update_fields=["name"])
    return sink


def kafka_bridge_update(*, bridge: AnyBridge, **changes: Any) -> AnyBridge:
    """Change a sink's or source's settings; a runner picks the change up when it next renews its hold.

    Deactivating it stops its runner; its position is kept.
    """
    update = {name: value for name, value in changes.items() if value is not None}
    merged = {name: getattr(bridge, name) for name in CONNECTION_FIELDS} | _connection_fields(update)
    _check_connection(merged)
    for name, value in update.items():
        setattr(bridge, name, value)
    written = [*update, "updated_at"]
    if update.get("is_active") is False:
        bridge.status = KafkaBridgeStatus.STOPPED
        written.append("status")
    elif update.get("is_active") is True and bridge.status == KafkaBridgeStatus.STOPPED:
        bridge.status = KafkaBridgeStatus.STARTING
        written.append("status")
    # The changed settings only: a running bridge writes its counters, status and hold meanwhile.
    # It compares updated_at when it renews its hold, and starts afresh with the new settings.
    bridge.save(update_fields=written)
    return bridge


def kafka_sink_take_over(*, group_id: int) -> None:
    """A runner starting a sink ends the lease a previous runner may have left on its group.

    That runner is gone or has lost its hold (kafka_runner_claim): waiting out
    its lease would only delay the sink. Its batch is sent again from the
    committed offset; should it still be alive, its commit is refused.
    """
    with transaction.atomic():
        # Locked before it is read: a commit the previous runner makes meanwhile must not be undone by
        # seeking back to the position it had before (positions never go backwards unless asked to).
        committed = (
            ConsumerGroup.objects.select_for_update().values_list("committed_offset", flat=True).get(pk=group_id)
        )
        consumer_group_seek(lookup={"pk": group_id}, position=Position(kind="offset", offset=committed))


def kafka_sink_delete(*, sink: KafkaSink) -> None:
    # The group goes with it (and with the group, through the cascade, the sink row).
    ConsumerGroup.objects.filter(pk=sink.group_id).delete()


# --- sources ----------------------------------------------------------------------------------------


def kafka_source_create(
    *,
    stream_id: int,
    stream_slug: str,
    topic: str,
    start: str,
    consumer_group: str = "",
    batch_size: int = 500,
    description: str = "",
    **connection: Any,
) -> KafkaSource:
    """Take ``topic``'s messages into the stream; ``consumer_group`` is the Kafka group id (one is made if empty)."""
    _check_topic(topic)
    fields = _connection_fields(connection)
    _check_connection(fields)
    try:
        with transaction.atomic():
            source = KafkaSource.objects.create(
                stream_id=stream_id,
                topic=topic,
                start=start,
                consumer_group=consumer_group or f"pending-{uuid.uuid4()}",
                batch_size=batch_size,
                description=description,
                **fields,
            )
            if not consumer_group:
                source.consumer_group = f"eventflow-{stream_slug}-{source.pk}"
                source.save(update_fields=["consumer_group"])
    except IntegrityError:
        raise Conflict("kafka_source_exists", "This stream already reads that topic with that group.") from None
    return source


def kafka_source_delete(*, source: KafkaSource) -> None:
    KafkaSource.objects.filter(pk=source.pk).delete()


# --- runners: who runs which sink or source --------------------------------------------------------


def kafka_runner_claim(*, model: type[BridgeModel], runner: str, seconds: float) -> list[BridgeModel]:
    """Hold every active sink (or source) that no live runner holds, renew those ``runner`` holds; return them.

    One UPDATE: a row another process renewed in the meantime is re-checked by
    PostgreSQL after its lock and left alone, so two bridges never both take it.
    """
    expires = Now() + timedelta(seconds=seconds)
    model.objects.filter(
        Q(runner=runner) | Q(runner_expires_at__isnull=True) | Q(runner_expires_at__lt=Now()), is_active=True
    ).update(runner=runner, runner_expires_at=expires)
    return list(model.objects.filter(runner=runner, is_active=True).select_related("stream").order_by("pk"))


def kafka_runner_release(
    *, model: type[KafkaSink] | type[KafkaSource], runner: str, ids: list[int] | None = None
) -> None:
    """Give back what ``runner`` holds (all, or ``ids``), so another process may take it at once."""
    held = model.objects.filter(runner=runner)
    if ids is not None:
        held = held.filter(pk__in=ids)
    held.update(runner="", runner_expires_at=None)


def kafka_bridge_failed(*, model: type[KafkaSink] | type[KafkaSource], pk: int, error: str, now: datetime) -> None:
    """The broker did not answer (or refused): paused, visible in the API, /health and /metrics."""
    model.objects.filter(pk=pk).update(
        status=KafkaBridgeStatus.PAUSED, last_error=error[:1000], last_error_at=now, errors=F("errors") + 1
    )


def kafka_bridge_running(*, model: type[KafkaSink] | type[KafkaSource], pk: int) -> None:
    model.objects.filter(pk=pk).exclude(status=KafkaBridgeStatus.RUNNING).update(status=KafkaBridgeStatus.RUNNING)


def kafka_sink_published(*, sink_id: int, count: int, now: datetime) -> None:
    KafkaSink.objects.filter(pk=sink_id).update(
        published=F("published") + count, last_published_at=now, status=KafkaBridgeStatus.RUNNING
    )


@dataclass
class Rejection:
    """A message the source could not take, as kept on the source (the newest ``RECENT_REJECTIONS``).

    ``value`` is the start of the message's value, for people to look at;
    ``raw`` the whole of it, which its dead letter keeps.
    """

    topic: str
    partition: int
    offset: int
    event_id: str | None
    errors: list[dict[str, str]]
    value: str
    raw: bytes | None = field(default=None, repr=False)

    def as_dict(self, at: datetime) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event_id": _shown_id(self.event_id),
            "errors": [{name: storable(text) for name, text in error.items()} for error in self.errors],
            "value": storable(self.value),
            "at": at.isoformat(),
        }


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it in text and jsonb: a NUL character (which it refuses) becomes U+FFFD.

    A refused message may hold anything: a value, an event_id or a key name with a NUL in it would
    otherwise fail the transaction that records it, and so the batch, again at every reading.
    """
    return text.replace("\x00", "\ufffd")


def _shown_id(event_id: Any) -> str | None:
    """A refused message's own event_id as people are shown it: text, at most EVENT_ID_MAX characters."""
    return None if event_id is None else storable(str(event_id))[:EVENT_ID_MAX]


def kafka_source_consumed(
    *, source_id: int, consumed: int, accepted: int, duplicates: int, rejections: list[Rejection], now: datetime
) -> None:
    """Count a batch the intake committed; the rejected messages are kept (newest first) and the source moves on."""
    with transaction.atomic():
        source = KafkaSource.objects.select_for_update().filter(pk=source_id).first()
        if source is None:
            return
        source.consumed += consumed
        source.accepted += accepted
        source.duplicates += duplicates
        source.rejected += len(rejections)
        source.last_consumed_at = now
        source.status = KafkaBridgeStatus.RUNNING
        # Not updated_at: it tells the runner its settings changed.
        fields = ["consumed", "accepted", "duplicates", "rejected", "last_consumed_at", "status"]
        if rejections:
            newest = [rejection.as_dict(now) for rejection in reversed(rejections)]
            source.recent_rejections = (newest + list(source.recent_rejections))[:RECENT_REJECTIONS]
            fields.append("recent_rejections")
        source.save(update_fields=fields)


# --- rejected messages as dead letters ------------------------------------------------------------

# The most of a rejected message a dead letter keeps: Kafka's default largest message (message.max.bytes).
DEAD_LETTER_VALUE_BYTES = 1_048_588


def message_event(value: bytes | str | None, *, event_id: str) -> tuple[Any, list[dict[str, str]] | None]:
    """A message's value as the event the intake is given, or why it can't be one (not JSON).

    An object without an ``event_id`` gets ``event_id``: the one derived from
    where the message sits in Kafka (``source_event_id``).
    """
    try:
        event = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        return None, [{"field": "", "code": "invalid_json", "message": f"The message is not JSON: {exc}"}]
    if isinstance(event, dict) and event.get("event_id") is None:
        event["event_id"] = event_id
    return event, None


def _error_class(errors: list[dict[str, str]]) -> str:
    return errors[0]["code"] if errors else "rejected"


def _errors_text(errors: list[dict[str, str]]) -> str:
    return storable(
        "\n".join(
            f"{error['field']}: {error['message']}" if error.get("field") else error["message"] for error in errors
        )
    )


def _kept_value(raw: bytes | None) -> dict[str, Any]:
    """A refused message's value as its letter keeps it: text when it is UTF-8 without NUL, else base64.

    Base64 keeps the bytes exactly (a value decoded with replacement characters could become
    valid JSON that differs from what was sent, and replaying it would take that in).
    """
    if raw is None:
        return {"value": None}
    kept = {"truncated": True} if len(raw) > DEAD_LETTER_VALUE_BYTES else {}
    data = raw[:DEAD_LETTER_VALUE_BYTES]
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return {"value": None, "value_base64": base64.b64encode(data).decode("ascii"), **kept}
    return {"value": text, **kept}


def _letter_value(event: dict[str, Any]) -> bytes | str | None:
    """The value a letter kept, as the message had it."""
    if isinstance(event.get("value_base64"), str):
        return base64.b64decode(event["value_base64"])
    value = event.get("value")
    return value if isinstance(value, str) else None


def kafka_source_rejected(*, source_id: int, stream_id: int, rejections: list[Rejection], now: datetime) -> None:
    """Record the messages the intake refused as dead letters of stage ``source``, once each.

    Runs in the transaction that committed the batch's events, before the
    source commits its Kafka offsets. A letter is named by where its message
    sits in Kafka, and a unique index (migration streams/0015) keeps one a
    message: a batch read again after a crash, or by a second bridge process
    during a rebalance, records nothing twice.
    """
    dead_letters_record(
        letters=[
            DeadLetterIn(
                stream_id=stream_id,
                event_id=source_event_id(topic=rejection.topic, partition=rejection.partition, offset=rejection.offset),
                event={
                    "kafka": {
                        "source_id": source_id,
                        "topic": rejection.topic,
                        "partition": rejection.partition,
                        "offset": rejection.offset,
                    },
                    "event_id": _shown_id(rejection.event_id),
                    **_kept_value(rejection.raw),
                },
                stage=DeadLetterStage.SOURCE,
                error_class=_error_class(rejection.errors),
                error_message=_errors_text(rejection.errors),
            )
            for rejection in rejections
        ],
        now=now,
        skip_recorded=True,
    )


def _holds_person(value: bytes | str | None, *, by: str, subject: str) -> bool:
    """Whether a refused message is an envelope of the person (its ``by`` field is ``subject``)."""
    try:
        event = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(event, dict) and event.get(by) == subject


def kafka_source_erase_person(*, stream_id: int, by: str, subject: str) -> int:
    """Take the person's refused messages out of the stream's sources: their letters and ``recent_rejections``.

    For an erasure (streams/erasure.py), in its transaction. A letter keeps the message's
    raw value, not the envelope's fields, so the candidates (whose value holds the id as
    text) are parsed here. Returns the letters deleted.
    """
    candidates = DeadLetter.objects.filter(
        stream_id=stream_id, stage=DeadLetterStage.SOURCE, event__value__icontains=subject
    ).values_list("pk", "event")
    theirs = {pk: event for pk, event in candidates if _holds_person(_letter_value(event), by=by, subject=subject)}
    messages = {(e["kafka"]["topic"], e["kafka"]["partition"], e["kafka"]["offset"]) for e in theirs.values()}
    for source in KafkaSource.objects.select_for_update().filter(stream_id=stream_id):
        kept = [
            r
            for r in source.recent_rejections
            if (r.get("topic"), r.get("partition"), r.get("offset")) not in messages
            and not _holds_person(r.get("value"), by=by, subject=subject)
        ]
        if len(kept) != len(source.recent_rejections):
            source.recent_rejections = kept
            source.save(update_fields=["recent_rejections"])
    DeadLetter.objects.filter(pk__in=list(theirs)).delete()
    return len(theirs)


def kafka_source_replay(letters: list[DeadLetter]) -> dict[int, str]:
    """Take rejected messages through the intake again (after a schema was fixed, say); the dead-letter replayer.

    A message that still has no event_id gets the one it would have had when
    first read, so a replay is idempotent with the source. A message the
    intake refuses again is left open with its new error (``still_rejected``).
    """
    now = timezone.now()
    refused: dict[int, str] = {}
    by_stream: dict[int, list[DeadLetter]] = {}
    for letter in letters:
        by_stream.setdefault(letter.stream_id, []).append(letter)
    slugs = dict(Stream.objects.filter(pk__in=list(by_stream)).values_list("pk", "slug"))
    for stream_id, of_stream in by_stream.items():
        # Read now, not from the few seconds' cache: a replay right after a schema fix must see the fix.
        info = stream_info_load(slugs[stream_id])
        assert info is not None  # the letters' stream: they are deleted with it
        events: list[Any] = []
        letters_sent: list[DeadLetter] = []
        for letter in of_stream:
            kept = letter.event if isinstance(letter.event, dict) else {}
            event, errors = message_event(_letter_value(kept), event_id=letter.event_id)
            if errors:
                refused[letter.pk] = SKIP_STILL_REJECTED
                _still_rejected(letter, errors, now)
            else:
                events.append(event)
                letters_sent.append(letter)
        if not events:
            continue
        result = events_ingest(stream=info, raw_events=events, received_at=now)
        for letter, entry in zip(letters_sent, result.results, strict=True):
            if entry["status"] == REJECTED:
                refused[letter.pk] = SKIP_STILL_REJECTED
                _still_rejected(letter, entry.get("errors", []), now)
    return refused


def _still_rejected(letter: DeadLetter, errors: list[dict[str, str]], now: datetime) -> None:
    DeadLetter.objects.filter(pk=letter.pk).update(
        error_class=_error_class(errors),
        error_message=_errors_text(errors),
        attempts=F("attempts") + 1,
        last_failed_at=now,
    )
