"""The intake's tests run twice: through Django's whole request cycle, and through the lean path in front of it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.test import Client
from django.test.client import ClientHandler, conditional_content_removal

from ingestion.wsgi import IntakeDispatcher


class LeanClientHandler(ClientHandler):
    """Django's test handler, with intake POSTs answered by ``IntakeDispatcher`` as ``eventflow.wsgi`` answers them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dispatcher: IntakeDispatcher | None = None

    def __call__(self, environ: dict[str, Any]) -> Any:
        if self.dispatcher is None:
            self.dispatcher = IntakeDispatcher(lambda environ, start_response: [])
            assert set(self.dispatcher.routes) == {False, True}, "the intake's routes moved: the lean path is off"
        response = self.dispatcher.respond(environ, upkeep=False)
        if response is None:
            return super().__call__(environ)
        request: WSGIRequest = response.wsgi_request  # type: ignore[attr-defined]
        conditional_content_removal(request, response)
        return response


class LeanClient(Client):
    def __init__(self, **defaults: Any) -> None:
        super().__init__(**defaults)
        self.handler = LeanClientHandler(enforce_csrf_checks=False)


@pytest.fixture(params=["django", "lean"])
def api(request: pytest.FixtureRequest, client: Client) -> Client:
    return client if request.param == "django" else LeanClient()
