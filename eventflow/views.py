from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from eventflow.errors import error_body, json_response


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_response(error_body("not_found", "No such endpoint."), 404)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return json_response(error_body("server_error", "Something went wrong on our side."), 500)
