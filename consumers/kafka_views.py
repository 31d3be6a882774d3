"""The dashboard's page of a stream's Kafka bridge: its sinks and sources, their state, and their changes.

Thin, as consumers/kafka_api.py: the same access (``manage``), selectors and
services. Secrets are taken by the forms and never shown back.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from eventflow.dashboard import page, submit
from streams.access import Action, Caller
from streams.selectors import StreamInfo

from .kafka_selectors import (
    kafka_sink_get,
    kafka_sink_state,
    kafka_sinks_of_stream,
    kafka_source_get,
    kafka_source_state,
    kafka_sources_of_stream,
)
from .kafka_services import (
    CONNECTION_FIELDS,
    kafka_bridge_update,
    kafka_sink_create,
    kafka_sink_delete,
    kafka_source_create,
    kafka_source_delete,
)
from .models import KafkaKey, KafkaSaslMechanism, KafkaSecurityProtocol, KafkaSink, KafkaSource, KafkaSourceStart
from .selectors import Position


class ConnectionForm(forms.Form):
    bootstrap_servers = forms.CharField(
        required=False,
        max_length=1000,
        label="Bootstrap servers",
        help_text="host:port, comma-separated. Left empty: the KAFKA_BOOTSTRAP_SERVERS setting.",
    )
    security_protocol = forms.ChoiceField(
        required=False, choices=[("", "The KAFKA_SECURITY_PROTOCOL setting"), *KafkaSecurityProtocol.choices]
    )
    sasl_mechanism = forms.ChoiceField(
        required=False,
        label="SASL mechanism",
        choices=[("", "The KAFKA_SASL_MECHANISM setting"), *KafkaSaslMechanism.choices],
    )
    sasl_username = forms.CharField(required=False, max_length=500, label="SASL user")
    sasl_password = forms.CharField(
        required=False,
        max_length=500,
        label="SASL password",
        widget=forms.PasswordInput,
        help_text="Never shown again.",
    )
    description = forms.CharField(required=False, max_length=500)


class SinkForm(ConnectionForm):
    topic = forms.RegexField(r"^[A-Za-z0-9._-]{1,249}$", max_length=249, help_text="Letters, digits, . _ and -.")
    key = forms.ChoiceField(choices=KafkaKey.choices, initial=KafkaKey.USER_ID, label="Message key")
    start = forms.ChoiceField(
        choices=[("earliest", "The log's earliest event"), ("latest", "Only events logged from now on")],
        label="Publish from",
    )
    batch_size = forms.IntegerField(min_value=1, max_value=10_000, initial=500, label="Events per batch")
    field_order = ["topic", "key", "start", "batch_size", "bootstrap_servers"]


class SourceForm(ConnectionForm):
    topic = forms.RegexField(
        r"^[A-Za-z0-9._-]{1,249}$", max_length=249, help_text="Each message: one event envelope (JSON)."
    )
    consumer_group = forms.RegexField(
        r"^[A-Za-z0-9._-]{1,200}$",
        required=False,
        max_length=200,
        help_text="Left empty: eventflow-{stream}-{source id}, e.g. eventflow-shop-3.",
    )
    start = forms.ChoiceField(choices=KafkaSourceStart.choices, label="A new group starts at")
    batch_size = forms.IntegerField(min_value=1, max_value=10_000, initial=500, label="Messages per batch")
    field_order = ["topic", "consumer_group", "start", "batch_size", "bootstrap_servers"]


def _connection(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in CONNECTION_FIELDS if name in data}


@page(Action.MANAGE, section="streams")
def kafka_page(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    sinks = [kafka_sink_state(sink) for sink in kafka_sinks_of_stream(stream_id=stream.id).order_by("id")]
    sources = [kafka_source_state(source) for source in kafka_sources_of_stream(stream_id=stream.id).order_by("id")]
    return render(request, "consumers/kafka.html", {"stream": stream, "sinks": sinks, "sources": sources})


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def kafka_sink_new(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    form = SinkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created = submit(
            form,
            lambda: kafka_sink_create(
                stream_id=stream.id,
                topic=data["topic"],
                key=data["key"],
                start=Position(kind=data["start"]),
                batch_size=data["batch_size"],
                description=data["description"],
                **_connection(data),
            ),
        )
        if created is not None:
            messages.success(request, f"Sink to {created.topic} created: the Kafka bridge starts it within seconds.")
            return redirect("kafka", slug=stream.slug)
    context = {"stream": stream, "form": form, "title": "New Kafka sink"}
    return render(request, "consumers/kafka_form.html", context)


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def kafka_source_new(request: HttpRequest, caller: Caller, stream: StreamInfo) -> HttpResponse:
    form = SourceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created = submit(
            form,
            lambda: kafka_source_create(
                stream_id=stream.id,
                stream_slug=stream.slug,
                topic=data["topic"],
                consumer_group=data["consumer_group"],
                start=data["start"],
                batch_size=data["batch_size"],
                description=data["description"],
                **_connection(data),
            ),
        )
        if created is not None:
            messages.success(
                request, f"Source from {created.topic} created: the Kafka bridge starts it within seconds."
            )
            return redirect("kafka", slug=stream.slug)
    context = {"stream": stream, "form": form, "title": "New Kafka source"}
    return render(request, "consumers/kafka_form.html", context)


def _bridge_action(
    request: HttpRequest, stream: StreamInfo, bridge: KafkaSink | KafkaSource, action: str, kind: str
) -> HttpResponse:
    """``toggle`` stops a running one or starts a stopped one; ``delete`` removes it. GET asks first."""
    if request.method == "POST":
        if action == "delete":
            if isinstance(bridge, KafkaSink):
                kafka_sink_delete(sink=bridge)
            else:
                kafka_source_delete(source=bridge)
            messages.success(request, f"The {kind} of {bridge.topic} is deleted.")
        elif (wanted := request.POST.get("active")) is not None and (wanted == "1") == bridge.is_active:
            # The confirmation says which way it goes: sent again (a double click, a reload), it must not undo itself.
            state = "running" if bridge.is_active else "stopped"
            messages.info(request, f"The {kind} of {bridge.topic} is {state} already: nothing changed.")
        else:
            kafka_bridge_update(bridge=bridge, is_active=not bridge.is_active)
            done = "started again" if bridge.is_active else "stopped"
            messages.success(request, f"The {kind} of {bridge.topic} is {done}.")
        return redirect("kafka", slug=stream.slug)
    context = {"stream": stream, "bridge": bridge, "action": action, "kind": kind}
    return render(request, "consumers/kafka_confirm.html", context)


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def kafka_sink_action(
    request: HttpRequest, caller: Caller, stream: StreamInfo, sink_id: int, action: str
) -> HttpResponse:
    sink = kafka_sink_get(stream_id=stream.id, sink_id=sink_id)
    return _bridge_action(request, stream, sink, action, "sink")


@page(Action.MANAGE, methods=("GET", "POST"), section="streams")
def kafka_source_action(
    request: HttpRequest, caller: Caller, stream: StreamInfo, source_id: int, action: str
) -> HttpResponse:
    source = kafka_source_get(stream_id=stream.id, source_id=source_id)
    return _bridge_action(request, stream, source, action, "source")
