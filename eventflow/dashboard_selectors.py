"""Reads of the dashboard's overview: each stream the caller reaches with what waits in it."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from ingestion.models import InboxEvent
from streams.access import Caller, streams_reached
from streams.dead_letters import dead_letters_of
from streams.models import DeadLetterStatus, Stream

# The overview lists this many streams; the list of streams pages through the rest.
OVERVIEW_STREAMS = 50


@dataclass(frozen=True)
class StreamSummary:
    stream: Stream
    # Events in the log (the head: the next offset it will assign).
    logged: int
    # Accepted events still waiting for processing.
    inbox: int
    open_dead_letters: int

    @property
    def quiet(self) -> bool:
        """Nothing has ever been sent to it."""
        return not (self.logged or self.inbox or self.open_dead_letters)


@dataclass(frozen=True)
class Overview:
    streams: list[StreamSummary]
    more: bool

    @property
    def logged(self) -> int:
        return sum(s.logged for s in self.streams)

    @property
    def inbox(self) -> int:
        return sum(s.inbox for s in self.streams)

    @property
    def open_dead_letters(self) -> int:
        return sum(s.open_dead_letters for s in self.streams)

    @property
    def quiet(self) -> bool:
        return all(s.quiet for s in self.streams)


def overview(*, caller: Caller) -> Overview:
    """The streams the caller reaches (the first ``OVERVIEW_STREAMS`` by slug): three queries in all.

    The inbox is drained continuously, so counting its rows per stream is a
    scan of a small table; the open letters are counted on their stream index.
    """
    streams = list(streams_reached(caller).select_related("head").order_by("slug")[: OVERVIEW_STREAMS + 1])
    more = len(streams) > OVERVIEW_STREAMS
    streams = streams[:OVERVIEW_STREAMS]
    ids = [stream.pk for stream in streams]
    inbox: dict[int, int] = {}
    letters: dict[int, int] = {}
    if ids:
        inbox = dict(
            InboxEvent.objects.filter(stream_id__in=ids)
            .order_by()
            .values("stream_id")
            .annotate(n=Count("*"))
            .values_list("stream_id", "n")
        )
        letters = dict(
            dead_letters_of(stream_ids=frozenset(ids))
            .filter(status=DeadLetterStatus.OPEN)
            .order_by()
            .values("stream_id")
            .annotate(n=Count("*"))
            .values_list("stream_id", "n")
        )
    return Overview(
        streams=[
            StreamSummary(
                stream=stream,
                logged=stream.head.next_offset,
                inbox=inbox.get(stream.pk, 0),
                open_dead_letters=letters.get(stream.pk, 0),
            )
            for stream in streams
        ],
        more=more,
    )
