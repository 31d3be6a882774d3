"""Answers of the analytics endpoints kept in Redis for a short while: the REST API's, and the
funnels', paths' and retention's, which the API and the dashboard's pages share.

The key is the stream, the endpoint and the question in normal form (the parsed
filter with its resolved time range, zone, interval, …), so the same question
asked in other words shares an answer. An answer lives at most
``ANALYTICS_CACHE_SECONDS`` (capped at 60): late events can change any range,
even one that ended long ago, so no answer is kept longer. When Redis is down
(``guarded`` and its circuit breaker) every question is computed: slower, never
wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import orjson

from eventflow import conf
from eventflow.redis import get_redis, guarded

MAX_SECONDS = 60

T = TypeVar("T")


def _seconds() -> int:
    return conf.get().analytics_cache_seconds


def cache_key(*, stream_id: int, endpoint: str, question: dict[str, Any]) -> str:
    digest = hashlib.sha256(orjson.dumps(question, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f"{conf.get().redis_key_prefix}:analytics:{stream_id}:{endpoint}:{digest}"


def cached_answer(
    *, stream_id: int, endpoint: str, question: dict[str, Any], compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The answer to ``question``: from Redis when it holds one, else computed and kept."""
    return _kept(stream_id, endpoint, question, compute, orjson.dumps, orjson.loads)


def cached_result(
    *, stream_id: int, endpoint: str, question: dict[str, Any], compute: Callable[[], T], kind: type[T]
) -> T:
    """``cached_answer`` for a selector's typed answer (a dataclass): the REST API and the pages that
    ask the same question share it. One kept in an older shape is computed again."""

    def load(raw: bytes | str) -> T | None:
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError:
            return None

    return _kept(stream_id, endpoint, question, compute, msgspec.json.encode, load)


def _kept(
    stream_id: int,
    endpoint: str,
    question: dict[str, Any],
    compute: Callable[[], T],
    dump: Callable[[T], bytes],
    load: Callable[[bytes | str], T | None],
) -> T:
    seconds = _seconds()
    if not seconds:
        return compute()
    key = cache_key(stream_id=stream_id, endpoint=endpoint, question=question)
    raw = guarded("analytics cache read", lambda: get_redis().get(key), None)
    if raw is not None:
        answer = load(raw)
        if answer is not None:
            return answer
    answer = compute()
    data = dump(answer)
    guarded("analytics cache write", lambda: get_redis().set(key, data, ex=seconds), None)
    return answer
