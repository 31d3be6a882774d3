"""The audit log's writers: security events in the caller's transaction, requests through a buffer.

Security events (``audit_security``) are one INSERT in the transaction of the
change they record, so the change and its record commit or roll back
together. Request rows (``audit_request_record``, called by
``eventflow.middleware.AuditMiddleware``) never touch the database on the
request's path: they go into a bounded in-process buffer that a background
thread writes with one COPY every ``EVENTFLOW_AUDIT_FLUSH_SECONDS`` (or
sooner, once ``EVENTFLOW_AUDIT_FLUSH_ROWS`` are waiting), and once more when
the process exits. What a crash (SIGKILL, power loss) can lose is what waits
in the buffer: at most the requests of the last flush interval plus one write,
and never more than ``EVENTFLOW_AUDIT_BUFFER_MAX`` rows per process. Past that
cap the oldest waiting rows are dropped and counted (``AuditBuffer.dropped``):
a request never waits for the audit log and memory never grows without bound.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q, QuerySet, Subquery
from django.utils import timezone

from eventflow import conf

from .db import bound_cursor
from .models import AuditEntry, AuditKind

# The request being served lives in eventflow/request_context.py (the logging configuration reads it
# too, before the apps are ready); its names stay importable from here.
from .request_context import RequestContext as RequestContext
from .request_context import current_request
from .request_context import request_context_reset as request_context_reset
from .request_context import request_context_set as request_context_set

if TYPE_CHECKING:
    from streams.access import Caller

logger = logging.getLogger(__name__)


# --- security events ------------------------------------------------------------------------------


def _user_pk(user: Any) -> int | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk  # type: ignore[no-any-return]


def audit_security(
    *,
    action: str,
    caller: Caller | None = None,
    user: Any = None,
    stream_id: int | None = None,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Record a security event (``"key.create"``, ``"login.failure"``, …) in the current transaction.

    Call it inside the ``transaction.atomic`` of the change it records. The
    caller names who did it (a key or a person); ``user`` is the person when
    there is no ``Caller`` (a login). Request id, client IP, method and path
    come from the request being served, if any. Never pass secrets in
    ``details``.
    """
    label = ""
    key_prefix = ""
    context = current_request()
    if caller is None and user is None and context is not None:
        # Services that take no caller are still attributed to whoever made the request.
        caller = getattr(context.request, "ef_caller", None)
    if caller is not None:
        label = caller.label
        if caller.key is not None:
            key_prefix = caller.key.prefix
        if user is None:
            user = caller.user
    if not label and _user_pk(user) is not None:
        label = str(user.get_username())
    AuditEntry.objects.create(
        kind=AuditKind.SECURITY,
        action=action[:64],
        caller=label[:150],
        user_id=_user_pk(user),
        key_prefix=key_prefix[:32],
        stream_id=stream_id,
        target=target[:200],
        details=details or {},
        request_id=context.request_id if context else "",
        client_ip=context.client_ip if context else None,
        method=context.method if context else "",
        path=context.path[:512] if context else "",
    )


# --- request rows and their buffer ----------------------------------------------------------------

# The columns a request row fills, in the order of ``RequestRow`` and the COPY below.
REQUEST_COLUMNS = (
    "at",
    "request_id",
    "kind",
    "action",
    "method",
    "path",
    "status",
    "duration_ms",
    "caller",
    "user_id",
    "key_prefix",
    "stream_id",
    "client_ip",
    "target",
    "details",
)
# COPY rather than the ORM's bulk_create: the flusher writes up to thousands of
# rows a second per process, and COPY streams them without building a statement
# or model instances (about a tenth of bulk_create's CPU per row here).
COPY_SQL = f"COPY eventflow_auditentry ({', '.join(REQUEST_COLUMNS)}) FROM STDIN"

RequestRow = tuple[
    datetime, str, str, str, str, str, int, float, str, int | None, str, int | None, str | None, str, str
]


def request_row(
    *,
    at: datetime,
    request_id: str,
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    caller: str,
    user_id: int | None,
    key_prefix: str,
    stream_id: int | None,
    client_ip: str | None,
) -> RequestRow:
    return (
        at,
        request_id,
        AuditKind.REQUEST.value,
        "",
        method[:16],
        path[:512],
        status,
        duration_ms,
        caller[:150],
        user_id,
        key_prefix[:32],
        stream_id,
        client_ip,
        "",
        "{}",
    )


def rows_write(rows: list[RequestRow]) -> None:
    """Write request rows with one COPY on this thread's connection."""
    with bound_cursor() as cursor, cursor.copy(COPY_SQL) as copy:
        for row in rows:
            copy.write_row(row)


class AuditBuffer:
    """Request rows waiting to be written, and the thread that writes them.

    ``add`` never blocks on the database: it appends under a lock held for
    microseconds. Rows waiting plus rows being written never exceed
    ``max_rows``; beyond that the oldest waiting row is dropped and counted.
    """

    def __init__(self, *, flush_seconds: float, flush_rows: int, max_rows: int) -> None:
        self.flush_seconds = flush_seconds
        self.flush_rows = max(1, flush_rows)
        self.max_rows = max(self.flush_rows, max_rows)
        self.dropped = 0
        self._rows: deque[RequestRow] = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._last_drop_log = 0.0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: RequestRow) -> None:
        if self._pid is not None and self._pid != os.getpid():
            # A forked child (gunicorn --preload) has no flusher thread yet.
            self._after_fork()
        with self._lock:
            if len(self._rows) + self._in_flight >= self.max_rows:
                self.dropped += 1
                if self._rows:
                    self._rows.popleft()
                else:
                    return
                self._log_drop()
            self._rows.append(row)
            waiting = len(self._rows)
        if waiting >= self.flush_rows:
            self._wake.set()

    def _log_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log > 60:
            self._last_drop_log = now
            logger.warning("audit buffer full (%s rows): dropped %s request rows so far", self.max_rows, self.dropped)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.dropped = 0

    def flush(self) -> int:
        """Write every waiting row now, on this thread's connection; the number written.

        On a database error the rows go back to the front of the buffer (within
        the cap) for the next try, and the error is logged.
        """
        with self._flush_lock:
            with self._lock:
                rows = list(self._rows)
                self._rows.clear()
                self._in_flight = len(rows)
            if not rows:
                return 0
            try:
                rows_write(rows)
            except Exception:
                logger.exception("audit log: writing %s request rows failed; kept for the next try", len(rows))
                with self._lock:
                    self._in_flight = 0
                    room = self.max_rows - len(self._rows)
                    keep = rows[-room:] if room > 0 else []
                    self.dropped += len(rows) - len(keep)
                    self._rows.extendleft(reversed(keep))
                # A broken connection is reopened on the next try (the flusher
                # thread's own; never one inside a caller's transaction).
                if not connection.in_atomic_block:
                    connection.close()
                return 0
            with self._lock:
                self._in_flight = 0
            return len(rows)

    # The flusher thread: started in web server processes (eventflow/wsgi.py).

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audit-flusher", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._in_flight = 0
        self._thread = None
        self.start()

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
                if self._stopping:
                    break
                self.flush()
        finally:
            connection.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the flusher and write what waits (at process exit)."""
        if self._thread is None or self._pid != os.getpid():
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        written = self.flush()
        if written:
            logger.info("audit log: wrote %s request rows at exit", written)


def _buffer_from_settings() -> AuditBuffer:
    settings = conf.get()
    return AuditBuffer(
        flush_seconds=settings.audit_flush_seconds,
        flush_rows=settings.audit_flush_rows,
        max_rows=settings.audit_buffer_max,
    )


_buffer: AuditBuffer | None = None
_buffer_lock = threading.Lock()


def audit_buffer() -> AuditBuffer:
    global _buffer
    if _buffer is None:
        with _buffer_lock:
            if _buffer is None:
                _buffer = _buffer_from_settings()
    return _buffer


def audit_request_record(row: RequestRow) -> None:
    audit_buffer().add(row)


def audit_flush() -> int:
    """Write the waiting request rows now (tests, management commands)."""
    return audit_buffer().flush()


def audit_flusher_start() -> None:
    """Start this process's flusher thread, and write what waits when the process exits."""
    buffer = audit_buffer()
    first = buffer._thread is None and buffer._pid is None
    buffer.start()
    if first:
        atexit.register(buffer.stop)


# --- retention ------------------------------------------------------------------------------------

# Only this statement may delete audit rows: the table's trigger refuses a DELETE
# unless the transaction has set eventflow.audit_retention (migration 0002).
RETENTION_SQL = """
DELETE FROM eventflow_auditentry
WHERE id IN (SELECT id FROM eventflow_auditentry WHERE at < %s ORDER BY at LIMIT %s)
"""


def audit_retention_run(*, days: int, chunk: int = 5000, budget_seconds: float = 30.0) -> int:
    """Delete audit rows older than ``days`` in chunks of ``chunk`` (each its own short transaction)."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    deadline = time.monotonic() + budget_seconds
    while time.monotonic() < deadline:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL eventflow.audit_retention = 'on'")
            cursor.execute(RETENTION_SQL, [cutoff, chunk])
            count = cursor.rowcount
        deleted += count
        if count < chunk:
            break
    return deleted


# --- reads ----------------------------------------------------------------------------------------


def audit_entries(
    *,
    stream_ids: frozenset[int] | None,
    kind: str | None = None,
    action: str | None = None,
    username: str | None = None,
    caller: str | None = None,
    stream_id: int | None = None,
    status: int | None = None,
    path_prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEntry]:
    """Audit rows matching the filters, newest first, among the rows of ``stream_ids`` and of no stream.

    ``stream_ids`` None means every stream (a superuser). Each filter has an
    index that ends in the time (see ``AuditEntry.Meta.indexes``).
    """
    rows = AuditEntry.objects.all()
    if stream_ids is not None:
        rows = rows.filter(Q(stream_id__isnull=True) | Q(stream_id__in=stream_ids))
    if kind:
        rows = rows.filter(kind=kind)
    if action:
        rows = rows.filter(action=action)
    if username:
        users = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).values("pk")
        rows = rows.filter(user_id__in=Subquery(users))
    if caller:
        rows = rows.filter(caller=caller)
    if stream_id is not None:
        rows = rows.filter(stream_id=stream_id)
    if status is not None:
        rows = rows.filter(status=status)
    if path_prefix:
        rows = rows.filter(path__startswith=path_prefix)
    if since is not None:
        rows = rows.filter(at__gte=since)
    if until is not None:
        rows = rows.filter(at__lt=until)
    return rows.order_by("-at", "-id")


# --- logins ---------------------------------------------------------------------------------------
# Connected in EventflowConfig.ready. Django sends these for every login that
# goes through authenticate()/login(): Django admin, the dashboard's login page
# and the JWT token endpoint (whose successes are "token.issue", see
# eventflow.audit_api.AuditedTokenObtainPairSerializer). Only the username is
# kept, never the password.


def login_failed_record(sender: Any, credentials: dict[str, Any], request: Any = None, **_: Any) -> None:
    username = credentials.get(get_user_model().USERNAME_FIELD, credentials.get("username", ""))
    audit_security(action="login.failure", target=str(username or "")[:150])


def logged_in_record(sender: Any, request: Any, user: Any, **_: Any) -> None:
    audit_security(action="login.success", user=user, target=str(user.get_username()))
