"""A consumer-group loop over EventFlow's HTTP API.

    consumer = Consumer("http://127.0.0.1:8000", stream="shop", group="billing", api_key="ef_secret_…")
    consumer.run(handle)   # handle(records) is called with each batch, in log order

Delivery is at least once: a batch is committed only after ``handle`` returns.
If it raises, the lease is given back and the batch comes again after a
backoff, with ``delivery_count`` one higher; if the process dies, it comes
again when the lease expires. Make ``handle`` idempotent (records carry
``event_id`` and ``offset``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
import urllib3

_json_loads: Callable[[bytes], Any]
try:  # A faster parser when the program has it; the standard library's otherwise.
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - depends on the consuming program
    from json import loads as _json_loads  # type: ignore[assignment]

logger = logging.getLogger("eventflow_client")

Record = dict[str, Any]


def _as_request_error(exc: urllib3.exceptions.HTTPError) -> requests.RequestException:
    """What requests raises for the same failure of a body it reads itself."""
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(exc, urllib3.exceptions.DecodeError):
        return requests.exceptions.ContentDecodingError(exc)
    return requests.exceptions.ChunkedEncodingError(exc)


class EventFlowError(Exception):
    """An error answer of the API: ``status``, and the body's ``code``, ``message`` and ``details``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after: float | None = None

    @property
    def transient(self) -> bool:
        """Worth retrying as is: rate limited, or the server or a dependency is down."""
        return self.status == 429 or self.status >= 500


@dataclass
class Batch:
    records: list[Record]
    lease_id: str | None
    start_offset: int
    next_offset: int
    head: int
    idle_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


class Consumer:
    def __init__(
        self,
        base_url: str,
        *,
        stream: str,
        group: str,
        api_key: str | None = None,
        token: str | None = None,
        max_records: int = 1000,
        lease_seconds: int = 30,
        wait_ms: int = 10_000,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        if bool(api_key) == bool(token):  # an empty one (an unset environment variable) is none
            raise ValueError("give either api_key (a secret key) or token (a JWT access token)")
        self.base = f"{base_url.rstrip('/')}/api/v1/streams/{quote(stream)}/consumer-groups/{quote(group)}"
        self.max_records = max_records
        self.lease_seconds = lease_seconds
        self.wait_ms = wait_ms
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.session = session or requests.Session()
        self.session.headers["X-API-Key" if api_key else "Authorization"] = api_key or f"Bearer {token}"
        self._failures = 0

    def close(self) -> None:
        """Close the HTTP connections (the server then frees the thread that served them)."""
        self.session.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one call each -----------------------------------------------------------------

    def _post(self, action: str, body: dict[str, Any], read_timeout: float = 30.0) -> dict[str, Any]:
        url = f"{self.base}/{action}"
        # Read the body in one go: a batch is about a megabyte, and requests' chunked
        # reading of it costs more CPU than parsing it.
        result: dict[str, Any]
        error: Exception | None
        with self.session.post(url, json=body, timeout=(5.0, read_timeout), stream=True) as response:
            try:
                content = response.raw.read(decode_content=True)
            except urllib3.exceptions.HTTPError as exc:
                # Read past requests, urllib3's errors are not requests'; the loop retries only those.
                result, error = {}, _as_request_error(exc)
            else:
                result, error = self._result(response.status_code, response.headers.get("Retry-After", ""), content)
        # A raised error's traceback must not keep the response (and its socket) alive.
        del response
        if error is not None:
            raise error
        return result

    @staticmethod
    def _result(status: int, retry_after: str, content: bytes) -> tuple[dict[str, Any], Exception | None]:
        if status < 400:
            try:
                return _json_loads(content), None
            except ValueError as not_json:  # an answer cut short, or not EventFlow's (a proxy's page)
                return {}, requests.exceptions.InvalidJSONError(f"{status} answer is not JSON: {not_json}")
        try:
            error = _json_loads(content)["error"]
        except (ValueError, KeyError, TypeError):
            error = {"code": "http_error", "message": content[:200].decode("utf-8", "replace")}
        exc = EventFlowError(status, error.get("code", ""), error.get("message", ""), error.get("details"))
        exc.retry_after = float(retry_after) if retry_after.isdigit() else None
        return {}, exc

    def poll(self, *, wait_ms: int | None = None) -> Batch:
        wait = self.wait_ms if wait_ms is None else wait_ms
        data = self._post(
            "poll",
            {"max": self.max_records, "lease_seconds": self.lease_seconds, "wait_ms": wait},
            read_timeout=wait / 1000 + 30,
        )
        lease = data.get("lease") or {}
        return Batch(
            records=data["records"],
            lease_id=lease.get("id"),
            start_offset=lease.get("start_offset", data["committed_offset"]),
            next_offset=data["next_offset"],
            head=data["head"],
            idle_reason=data.get("idle_reason"),
            raw=data,
        )

    def commit(self, batch: Batch, *, offset: int | None = None, release: bool = False) -> dict[str, Any]:
        """Commit ``offset`` (default: the whole batch) under the batch's lease."""
        if batch.lease_id is None:
            raise ValueError("this batch holds no lease")
        body = {"lease_id": batch.lease_id, "offset": batch.next_offset if offset is None else offset}
        if release:
            body["release"] = True
        return self._post("commit", body)

    # --- the loop --------------------------------------------------------------------------

    def _backoff(self, retry_after: float | None = None) -> float:
        self._failures += 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (self._failures - 1)) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
        return max(delay, retry_after or 0.0)

    def _commit_with_retries(self, batch: Batch, stop: threading.Event) -> bool:
        """True once committed; False if the lease was lost (the batch will be delivered again).

        Once ``stop`` is set, one more attempt is made without waiting, then the
        commit is given up: the batch comes again when its lease expires.
        """
        stopping = False
        while True:
            try:
                self.commit(batch)
                return True
            except EventFlowError as exc:
                if exc.status == 409:
                    logger.warning("lease lost before commit (%s); the batch will be delivered again", exc.code)
                    return False
                if not exc.transient:
                    raise
                delay = self._backoff(exc.retry_after)
            except requests.RequestException as exc:
                # A commit repeated after a lost answer is harmless: same lease, same offset.
                logger.warning("commit failed (%s); retrying", exc)
                delay = self._backoff()
            if stopping:
                logger.warning(
                    "stopped before the commit of offsets %s..%s; they will be delivered again after the lease",
                    batch.start_offset,
                    batch.next_offset - 1,
                )
                return False
            stopping = stop.wait(delay)

    def run(
        self,
        handle: Callable[[list[Record]], None],
        *,
        stop: threading.Event | None = None,
        max_batches: int | None = None,
    ) -> int:
        """Poll, hand each batch to ``handle``, commit after it returns; until ``stop`` is set.

        Transient errors (network, 429, 5xx) and exceptions from ``handle`` are
        retried after an exponential backoff with jitter; other API errors
        (401, 403, 404, 400) are raised. Returns the number of batches committed.
        """
        stop = stop or threading.Event()
        committed = 0
        while not stop.is_set() and (max_batches is None or committed < max_batches):
            try:
                batch = self.poll()
            except EventFlowError as exc:
                if not exc.transient:
                    raise
                stop.wait(self._backoff(exc.retry_after))
                continue
            except requests.RequestException as exc:
                logger.warning("poll failed (%s); backing off", exc)
                stop.wait(self._backoff())
                continue
            if batch.lease_id is None:
                # Caught up, paused, or another member holds the lease: a long poll already waited.
                self._failures = 0
                if self.wait_ms == 0 or batch.idle_reason == "paused":
                    stop.wait(min(1.0, self.backoff_max))
                continue
            try:
                if batch.records:
                    handle(batch.records)
            except Exception:
                logger.exception("handler failed at offsets %s..%s", batch.start_offset, batch.next_offset - 1)
                # Give the lease back so the batch comes again after the backoff, not the lease's end.
                try:
                    self.commit(batch, offset=batch.start_offset, release=True)
                except (EventFlowError, requests.RequestException) as exc:
                    logger.warning("could not give the lease back (%s); it will expire", exc)
                stop.wait(self._backoff())
                continue
            if self._commit_with_retries(batch, stop):
                committed += 1
                self._failures = 0
        return committed
