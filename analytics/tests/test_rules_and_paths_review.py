"""Review findings on alert rule pages and paths, each checked as a user meets it: through the API and the pages.

- A condition value with leading or trailing spaces or new lines, kept exactly by the REST API, was stripped
  by the rule's page (shown, edited and saved unchanged, the rule came back different).
- A threshold rule switched to ``absence`` and back came back with a threshold of 1, not the one set.
- ``paths`` from a start after which no session goes on answered ``nodes: []``, though the paths that do go
  on show where sessions end as ``$end``.
"""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from analytics import journeys
from analytics.alerts import alert_rule_create, alert_rule_get
from analytics.models import AlertKind, AlertRule
from streams.models import Stream
from streams.services import team_create

from .journey_fixtures import BASE, event, log, person_of

pytestmark = pytest.mark.django_db

RULES = f"{BASE}/alert-rules"
PATHS = f"{BASE}/analytics/paths"


def _page_client(stream: Stream, role: str) -> Client:
    user = User.objects.create_user(f"page-{role.lower()}", password=None)
    user.groups.add(Group.objects.get(name=role))
    team_create(slug=f"page-team-{role.lower()}", members=[user], streams=[stream])
    client = Client()
    client.force_login(user)
    return client


class _FormReader(HTMLParser):
    """What a browser sends back from the page's alert rule form when nothing is touched."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.data: dict[str, str] = {}
        self._in_form = False
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == "alert-rule-form":
            self._in_form = True
        if not self._in_form or not a.get("name"):
            return
        if tag == "input":
            kind = a.get("type") or "text"
            if kind in ("radio", "checkbox"):
                if "checked" in a:
                    self.data[a["name"] or ""] = a.get("value") or "on"
            else:
                self.data[a["name"] or ""] = a.get("value") or ""
        elif tag == "textarea":
            self._textarea, self._text = a["name"], []

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            # HTML drops one new line right after <textarea>.
            self.data[self._textarea] = text[1:] if text.startswith("\n") else text
            self._textarea = None
        elif tag == "form":
            self._in_form = False


def _form_sent_back(page: Any) -> dict[str, str]:
    assert page.status_code == 200
    reader = _FormReader()
    reader.feed(page.content.decode())
    # A browser sends a textarea's line breaks as CR LF.
    return {name: value.replace("\r\n", "\n").replace("\n", "\r\n") for name, value in reader.data.items()}


# --- 1. condition values round-trip through the rule's page ------------------------------------------------

SPACED_CONDITIONS = [
    {"property": "payload.reason", "op": "eq", "values": [" locked ", "locked", "two\nlines", ""]},
    {"property": "payload.note", "op": "ne", "values": ["\ttabbed ", '"quoted"', 'say "hi"', "a\u2028b"]},
    {"property": "payload.Product Name", "op": "eq", "values": ["Pro Plan"]},
    {"property": "payload.coupon", "op": "exists", "values": []},
]


def test_condition_values_with_spaces_and_new_lines_round_trip_through_the_edit_page(stream: Stream) -> None:
    developer_api = person_of(stream, "Developer", "dev-api")
    made = developer_api.post(
        RULES,
        {
            "name": "locked out",
            "event_types": ["login"],
            "conditions": SPACED_CONDITIONS,
            "threshold": 3,
            "window_seconds": 300,
        },
    )
    assert made.status_code == 201, made.content
    assert made.json()["conditions"] == SPACED_CONDITIONS
    rule = AlertRule.objects.get(pk=made.json()["id"])
    before = (rule.conditions, rule.active_since, rule.updated_at)

    pages = _page_client(stream, "Developer")
    edit = f"/streams/shop/alerts/{rule.pk}/edit/"
    data = _form_sent_back(pages.get(edit))
    saved = pages.post(edit, data)
    assert saved.status_code == 302, saved.context["form"].errors
    rule.refresh_from_db()
    assert (rule.conditions, rule.active_since, rule.updated_at) == before

    # The same rule written on the page is the rule the API keeps.
    again = pages.post("/streams/shop/alerts/new/", {**data, "name": "locked out, by hand"})
    assert again.status_code == 302, again.context["form"].errors
    assert AlertRule.objects.get(name="locked out, by hand").conditions == SPACED_CONDITIONS
    # The list shows the values as they are kept (quoted where spaces would not show).
    listed = pages.get("/streams/shop/alerts/").content.decode()
    assert "payload.reason = &quot; locked &quot;" in listed


@pytest.mark.parametrize(
    ("line", "values"),
    [
        ('payload.reason = " locked "', [" locked "]),
        ("payload.reason =   locked  ", ["locked"]),
        ('payload.reason = "a\\nb"', ["a\nb"]),
        ('payload.reason = ""', [""]),
        ('payload.reason = "half', ['"half']),
        ('payload.reason = "a" or "b', ['"a" or "b']),
    ],
)
def test_a_value_in_double_quotes_is_read_as_a_json_string(stream: Stream, line: str, values: list[str]) -> None:
    pages = _page_client(stream, "Developer")
    answer = pages.post(
        "/streams/shop/alerts/new/",
        {
            "name": "r",
            "kind": "threshold",
            "conditions": line,
            "threshold": "2",
            "window_seconds": "5m",
            "cooldown_seconds": "10m",
            "is_active": "on",
        },
    )
    assert answer.status_code == 302, answer.context["form"].errors
    assert AlertRule.objects.get(name="r").conditions == [{"property": "payload.reason", "op": "eq", "values": values}]


def test_a_broken_quoted_value_is_shown_on_its_line_and_nothing_is_written(stream: Stream) -> None:
    pages = _page_client(stream, "Developer")
    answer = pages.post(
        "/streams/shop/alerts/new/",
        {
            "name": "r",
            "kind": "threshold",
            "conditions": 'payload.plan = pro\npayload.reason = "a\\q"',
            "threshold": "2",
            "window_seconds": "5m",
            "cooldown_seconds": "10m",
            "is_active": "on",
        },
    )
    assert answer.status_code == 200
    assert "Line 2" in " ".join(answer.context["form"].errors["conditions"])
    assert not AlertRule.objects.exists()


# --- 2. switching to absence and back keeps the threshold ------------------------------------------------------


def test_the_api_keeps_the_threshold_of_a_rule_switched_to_absence_and_back(stream: Stream) -> None:
    developer = person_of(stream, "Developer", "dev-api")
    made = developer.post(RULES, {"name": "busy", "event_types": ["login"], "threshold": 7, "window_seconds": 300})
    rule_id = made.json()["id"]
    absent = developer.patch(f"{RULES}/{rule_id}", {"kind": "absence"})
    assert absent.status_code == 200, absent.content
    assert (absent.json()["kind"], absent.json()["threshold"]) == ("absence", 7)
    back = developer.patch(f"{RULES}/{rule_id}", {"kind": "threshold"})
    assert (back.json()["kind"], back.json()["threshold"]) == ("threshold", 7)


def test_the_page_keeps_the_threshold_of_a_rule_switched_to_absence_and_back(stream: Stream) -> None:
    rule = alert_rule_create(stream_id=stream.pk, name="busy", event_types=["login"], threshold=7, window_seconds=300)
    pages = _page_client(stream, "Developer")
    edit = f"/streams/shop/alerts/{rule.pk}/edit/"
    to_absence = pages.post(edit, {**_form_sent_back(pages.get(edit)), "kind": "absence"})
    assert to_absence.status_code == 302, to_absence.context["form"].errors
    absent = alert_rule_get(stream_id=stream.pk, rule_id=rule.pk)
    assert (absent.kind, absent.threshold) == (AlertKind.ABSENCE, 7)
    page = pages.get(edit)
    assert page.context["form"]["threshold"].value() == 7
    back = pages.post(edit, {**_form_sent_back(page), "kind": "threshold"})
    assert back.status_code == 302, back.context["form"].errors
    rule.refresh_from_db()
    assert (rule.kind, rule.threshold) == (AlertKind.THRESHOLD, 7)


def test_an_absence_rule_saved_with_no_threshold_on_its_page_keeps_the_one_it_had(stream: Stream) -> None:
    rule = alert_rule_create(stream_id=stream.pk, name="busy", event_types=["login"], threshold=7, window_seconds=300)
    pages = _page_client(stream, "Developer")
    edit = f"/streams/shop/alerts/{rule.pk}/edit/"
    answer = pages.post(edit, {**_form_sent_back(pages.get(edit)), "kind": "absence", "threshold": ""})
    assert answer.status_code == 302, answer.context["form"].errors
    rule.refresh_from_db()
    assert (rule.kind, rule.threshold) == (AlertKind.ABSENCE, 7)
    # A threshold rule still needs its threshold.
    refused = pages.post(edit, {**_form_sent_back(pages.get(edit)), "kind": "threshold", "threshold": ""})
    assert refused.status_code == 200
    assert refused.context["form"].errors["threshold"] == ["How many events fire the rule?"]


def test_the_threshold_an_absence_rule_keeps_does_not_restart_its_watch(stream: Stream) -> None:
    developer = person_of(stream, "Developer", "dev-api")
    made = developer.post(RULES, {"name": "quiet", "kind": "absence", "event_types": ["login"], "window_seconds": 300})
    rule = AlertRule.objects.get(pk=made.json()["id"])
    assert rule.threshold == 1
    changed = developer.patch(f"{RULES}/{rule.pk}", {"threshold": 4})
    assert changed.json()["threshold"] == 4
    kept = AlertRule.objects.get(pk=rule.pk)
    assert kept.active_since == rule.active_since


# --- 3. paths show where sessions end, at the first step too ---------------------------------------------------


def _ends_at_once(stream: Stream) -> None:
    """Three sessions whose last event is a ``form_submit``; one more page view after it in a fourth."""
    at = timezone.now() - timedelta(hours=2)
    records = []
    for n in range(3):
        records += [
            event("page_view", at, session=f"s{n}", payload={"page": "/signup"}),
            event("form_submit", at + timedelta(seconds=5), session=f"s{n}"),
        ]
    records += [
        event("button_click", at, session="s9"),
        event("page_view", at + timedelta(seconds=5), session="s9", payload={"page": "/docs"}),
    ]
    log(stream, records)


@pytest.mark.parametrize("few_starts", [5000, 0], ids=["sessions-by-name", "one-pass"])
def test_paths_from_a_start_no_session_goes_on_from_answer_one_end_node(
    stream: Stream, few_starts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journeys, "FEW_STARTS", few_starts)
    _ends_at_once(stream)
    analyst = person_of(stream)
    body = analyst.get(PATHS, start="form_submit").json()
    assert body["sessions"] == 3
    assert body["nodes"] == [{"level": 1, "path": [journeys.END], "step": journeys.END, "count": 3}]
    # The same rule one step further: all sessions end after /docs, so /docs has its $end.
    docs = analyst.get(PATHS, start="button_click").json()
    assert [(n["path"], n["count"]) for n in docs["nodes"]] == [
        (["page_view:/docs"], 1),
        (["page_view:/docs", journeys.END], 1),
    ]
    # Going back from a session's first event: the walk ends at once as well.
    first = analyst.get(PATHS, start="button_click", direction="previous").json()
    assert first["nodes"] == [{"level": 1, "path": [journeys.END], "step": journeys.END, "count": 1}]
    # A start no session holds has no sessions to end.
    assert analyst.get(PATHS, start="video_play").json()["nodes"] == []


def test_the_paths_page_shows_the_sessions_that_end_at_the_start(stream: Stream) -> None:
    _ends_at_once(stream)
    analyst = _page_client(stream, "Analyst")
    page = analyst.get("/streams/shop/analytics/paths/", {"start": "form_submit", "range": "24h"})
    assert page.status_code == 200
    assert [(n.step, n.count) for n in page.context["answer"].nodes] == [(journeys.END, 3)]
    html = page.content.decode()
    assert 'id="paths"' in html and "session ends" in html
    assert "No session holds that event" not in html
    nowhere = analyst.get("/streams/shop/analytics/paths/", {"start": "video_play", "range": "24h"})
    assert "No session holds that event" in nowhere.content.decode()
