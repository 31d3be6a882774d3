"""Delivery counts of a consumer group's uncommitted records, as compact segments.

Every hand-out covers a prefix ``[committed, end)`` of the uncommitted
records, so the counts never increase with the offset and a short list of
``[end_offset, count]`` segments describes them all: the first segment runs
from the committed offset to its end, each next one from the previous end.
"""

from __future__ import annotations

Segments = list[list[int]]


def _merged(segments: Segments) -> Segments:
    out: Segments = []
    for end, count in segments:
        if out and out[-1][1] == count:
            out[-1][0] = end
        else:
            out.append([end, count])
    return out


def segments_trim(segments: Segments, committed: int) -> Segments:
    """Forget the counts of records before ``committed``."""
    return [[end, count] for end, count in segments if end > committed]


def segments_head_count(segments: Segments, committed: int) -> int:
    """How many times the record at ``committed`` has been handed out."""
    for end, count in segments:
        if end > committed:
            return count
    return 0


def segments_hand_out(segments: Segments, committed: int, end: int) -> Segments:
    """The counts after handing out ``[committed, end)`` once more."""
    out: Segments = []
    previous = committed
    for seg_end, count in segments_trim(segments, committed):
        if previous >= end:
            out.append([seg_end, count])
        elif seg_end <= end:
            out.append([seg_end, count + 1])
        else:
            out.append([end, count + 1])
            out.append([seg_end, count])
        previous = seg_end
    if previous < end:
        out.append([end, 1])
    return _merged(out)


def segments_exhausted_end(segments: Segments, committed: int, max_deliver: int) -> int:
    """The end of the prefix of records handed out ``max_deliver`` times or more (``committed`` if none)."""
    exhausted = committed
    for end, count in segments_trim(segments, committed):
        if count < max_deliver:
            break
        exhausted = end
    return exhausted


def segments_counts_sql_args(segments: Segments) -> tuple[list[int], list[int]]:
    """Bucket bounds and counts for ``counts[width_bucket(offset, bounds) + 1]`` in SQL."""
    return [end for end, _ in segments], [count for _, count in segments]
