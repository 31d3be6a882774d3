"""Who may read a stream through consumer groups and manage its webhooks.

One place decides, so that finer roles can replace ``user_may_consume`` later
without touching the views.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from eventflow.errors import ApiError
from streams.auth import API_KEY_HEADER, authenticate_key
from streams.models import ApiKeyKind
from streams.selectors import StreamInfo, stream_info

CONSUMER_KEY_KINDS = frozenset({ApiKeyKind.SECRET})
CONSUMER_ROLES = ("Admin", "Consumer")


def user_may_consume(user: Any) -> bool:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return bool(user.groups.filter(name__in=CONSUMER_ROLES).exists())


def consumer_access(request: Request, slug: str) -> StreamInfo:
    """The stream behind ``slug`` if the request may use its consumers; else the 401/403/404 the API promises.

    A secret key must be granted the stream; another stream's resources answer
    404, exactly as a stream that does not exist.
    """
    info = stream_info(slug)
    if request.META.get(API_KEY_HEADER):
        authenticate_key(request.META, stream_id=info.id if info else -1, kinds=CONSUMER_KEY_KINDS)
    elif request.user is None or not getattr(request.user, "is_authenticated", False):
        raise ApiError(
            401,
            "not_authenticated",
            "Send a secret API key in X-API-Key, or a token in Authorization: Bearer.",
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    elif not user_may_consume(request.user):
        raise ApiError(403, "permission_denied", "Your role may not use consumer groups or webhooks.")
    if info is None:
        raise ApiError(404, "stream_not_found", "No such stream.")
    return info
