"""The request being served, and the request a Celery task was caused by.

One context variable holds it: the audit middleware sets it for a web request,
and the Celery hooks below set it for each task run, so log lines
(eventflow/logs.py) and audit rows (eventflow/audit.py) written anywhere on
the way name the request that started it. The id travels from the request to
its tasks in a message header, and on from a task to the tasks it queues.

No Django model is imported here: the logging configuration loads this module
before the apps are ready.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

# The Celery message header that carries the request id (beside Celery's own id, root_id, parent_id…).
REQUEST_ID_HEADER = "eventflow_request_id"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a log line or a security event takes from the request it happens in."""

    request_id: str
    client_ip: str | None
    method: str
    path: str
    # The Django request (None in a task): its caller (request.ef_caller) is known only once the view has asked.
    request: Any = None


_current_request: ContextVar[RequestContext | None] = ContextVar("eventflow_audit_request", default=None)


def request_context_set(context: RequestContext) -> Token[RequestContext | None]:
    return _current_request.set(context)


def request_context_reset(token: Token[RequestContext | None]) -> None:
    _current_request.reset(token)


def current_request() -> RequestContext | None:
    return _current_request.get()


def current_request_id() -> str:
    context = _current_request.get()
    return context.request_id if context is not None else ""


# --- Celery: from the request into its tasks ------------------------------------------------------

# The context each running task replaced, by task id, to put back when it ends. An eager task runs
# inside the request that queued it and must leave that request's context as it found it.
_task_tokens: dict[str, Token[RequestContext | None]] = {}


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def _header(task: Any) -> str:
    request = getattr(task, "request", None)
    value = getattr(request, REQUEST_ID_HEADER, None)
    if not value:
        # Celery keeps a message's own headers here too, depending on how the task was delivered.
        value = (getattr(request, "headers", None) or {}).get(REQUEST_ID_HEADER)
    return value if isinstance(value, str) else ""


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    # Eager runs are never published: they inherit the request they run in.
    request_id = _header(task) or current_request_id()
    context = RequestContext(request_id, None, "", "") if request_id else None
    _task_tokens[task_id] = _current_request.set(context)


def _on_postrun(task_id: str | None = None, **_: Any) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        try:
            _current_request.reset(token)
        except ValueError:
            # Set in another context (a pool that runs prerun and postrun apart): just clear it.
            _current_request.set(None)


def celery_request_id_connect() -> None:
    """Carry the request id into every task queued while serving it, and into that task's logs and audit rows."""
    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="eventflow.request_id.publish")
    task_prerun.connect(_on_prerun, weak=False, dispatch_uid="eventflow.request_id.prerun")
    task_postrun.connect(_on_postrun, weak=False, dispatch_uid="eventflow.request_id.postrun")
