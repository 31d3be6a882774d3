"""Every page under a stream shows the stream's tab bar: the tabs its viewer may open, its own section marked.

For each role, each stream page the role may open is fetched and its tab bar (``nav[aria-label="This
stream"]``) read: the tabs shown must be exactly the sections whose page answers 200 for that role
(found by fetching every section's page, not by asking the code that draws the bar), and the one
marked ``class="active" aria-current="page"`` the page's own section. The bar is drawn by one helper
(``eventflow.dashboard.stream_tabs``), which asks ``streams/access.py`` and costs no query.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from consumers.webhook_services import webhook_create
from eventflow.dashboard import STREAM_TABS, page_caller, stream_tabs
from streams.log import LogRecord, log_append_now
from streams.models import Stream
from streams.selectors import schemas_of_stream
from streams.services import stream_create, team_create
from tests.fixtures import conf_override

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashes")]

ROLES = ("Admin", "Developer", "Analyst", "Operator", "Consumer")

# Each section's pages, the one its tab links to first: the tab links to the first its viewer may open.
SECTION_PAGES = {
    "overview": ["/streams/shop/"],
    "events": ["/streams/shop/events/"],
    # An Operator reads no events but watches processing health.
    "analytics": ["/streams/shop/analytics/", "/streams/shop/analytics/processing/"],
    "schemas": ["/streams/shop/schemas/"],
    "groups": ["/streams/shop/groups/"],
    "webhooks": ["/streams/shop/webhooks/"],
    "kafka": ["/streams/shop/kafka/"],
    "alerts": ["/streams/shop/alerts/"],
    # The dead letters' page is not under the stream: the tab opens it filtered to the stream.
    "dead-letters": ["/dead-letters/?stream=shop"],
}

# Every page under the stream that carries the bar, and its section ({event}, {type}, {hook} filled in below).
PAGES = [
    ("/streams/shop/", "overview"),
    ("/streams/shop/events/", "events"),
    ("/streams/shop/events/{event}/", "events"),
    ("/streams/shop/analytics/", "analytics"),
    ("/streams/shop/analytics/funnel/", "analytics"),
    ("/streams/shop/analytics/retention/", "analytics"),
    ("/streams/shop/analytics/paths/", "analytics"),
    ("/streams/shop/analytics/processing/", "analytics"),
    ("/streams/shop/alerts/", "alerts"),
    ("/streams/shop/schemas/", "schemas"),
    ("/streams/shop/schemas/{type}/", "schemas"),
    ("/streams/shop/groups/", "groups"),
    ("/streams/shop/webhooks/", "webhooks"),
    ("/streams/shop/webhooks/{hook}/", "webhooks"),
    ("/streams/shop/kafka/", "kafka"),
]

# What each role's pages answer, as the roles (eventflow/roles.py) and the pages' declarations have it:
# a check that the walk below is not vacuous (an Operator, say, opens the stream and its schemas only).
OPENS = {
    "Admin": set(SECTION_PAGES),
    "Developer": set(SECTION_PAGES) - {"dead-letters"},
    "Analyst": {"overview", "events", "analytics", "schemas", "alerts"},
    "Operator": {"overview", "schemas", "analytics", "dead-letters"},
    "Consumer": {"overview", "schemas", "groups"},
}


class TabBars(HTMLParser):
    """The links of every ``<nav aria-label="This stream">``: (label, href, class, aria-current)."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[list[dict[str, str]]] = []
        self._in_bar = False
        self._link: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "nav" and found.get("aria-label") == "This stream":
            self._in_bar = True
            self.bars.append([])
        elif tag == "a" and self._in_bar:
            self._link = {"href": found.get("href", ""), "class": found.get("class", ""), "label": ""}
            self._link["aria-current"] = found.get("aria-current", "")
            self.bars[-1].append(self._link)

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link["label"] += data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._link = None
        elif tag == "nav":
            self._in_bar = False


def tab_bar(html: str) -> list[dict[str, str]]:
    parser = TabBars()
    parser.feed(html)
    assert len(parser.bars) == 1, f"{len(parser.bars)} stream tab bars on the page"
    return parser.bars[0]


@pytest.fixture
def shop(db: Any, settings: Any) -> dict[str, Any]:
    conf_override(settings, webhook_allow_loopback=True)
    stream = stream_create(slug="shop", name="Shop", with_starter_schemas=True)
    now = timezone.now()
    log_append_now(
        stream_id=stream.pk,
        records=[LogRecord(event_id="e1", type="page_view", event_time=now, received_at=now, payload={"page": "/"})],
    )
    hook = webhook_create(stream_id=stream.pk, url="http://127.0.0.1:9/hook").webhook
    return {"stream": stream, "event": "e1", "type": sorted(schemas_of_stream(stream_id=stream.pk))[0], "hook": hook.pk}


def team_of_roles(stream: Stream) -> dict[str, User]:
    """A person of each role, all in one team granted ``stream``."""
    found = {}
    for role in ROLES:
        user = User.objects.create_user(role.lower(), email=f"{role.lower()}@example.com", password="a-long-password-1")
        user.groups.add(Group.objects.get(name=role))
        found[role] = user
    team_create(slug="growth", members=list(found.values()), streams=[stream])
    return found


@pytest.fixture
def people(shop: dict[str, Any]) -> dict[str, User]:
    return team_of_roles(shop["stream"])


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ROLES)
def test_each_stream_page_shows_the_tabs_its_viewer_may_open(
    role: str, people: dict[str, User], shop: dict[str, Any]
) -> None:
    client = signed_in(people[role])
    labels = {section: label for section, label, _name in STREAM_TABS}
    status = {path: client.get(path).status_code for paths in SECTION_PAGES.values() for path in paths}
    assert set(status.values()) <= {200, 403}, status
    first = {
        section: next((path for path in paths if status[path] == 200), None) for section, paths in SECTION_PAGES.items()
    }
    allowed = {section for section, path in first.items() if path is not None}
    assert allowed == OPENS[role]
    expected = {(labels[section], first[section]) for section in allowed}

    walked = 0
    for template, section in PAGES:
        path = template.format(event=shop["event"], type=shop["type"], hook=shop["hook"])
        response = client.get(path)
        # Under analytics, the pages other than processing need read: an Operator's tab opens processing only.
        if section not in allowed or (
            section == "analytics"
            and status[SECTION_PAGES["analytics"][0]] != 200
            and not path.endswith("/processing/")
        ):
            assert response.status_code == 403, (role, path, response.status_code)
            continue
        assert response.status_code == 200, (role, path, response.status_code)
        walked += 1
        tabs = tab_bar(response.content.decode())
        shown = {(tab["label"], tab["href"]) for tab in tabs}
        assert shown == expected, (role, path)
        assert len(tabs) == len(shown), (role, path, "a tab shown twice")
        for tab in tabs:
            assert client.get(tab["href"]).status_code == 200, (role, path, tab)
        active = [tab for tab in tabs if "active" in tab["class"].split()]
        assert [(tab["label"], tab["aria-current"]) for tab in active] == [(labels[section], "page")], (role, path)
        assert all(tab["aria-current"] == "" for tab in tabs if tab not in active), (role, path)
    assert walked >= 3


def test_the_tabs_of_a_stream_page_come_in_their_order(people: dict[str, User], shop: dict[str, Any]) -> None:
    tabs = tab_bar(signed_in(people["Admin"]).get("/streams/shop/kafka/").content.decode())
    assert [tab["label"] for tab in tabs] == [label for _s, label, _n in STREAM_TABS]


def test_the_analytics_pages_keep_their_own_row_below_the_streams(
    people: dict[str, User], shop: dict[str, Any]
) -> None:
    html = signed_in(people["Analyst"]).get("/streams/shop/analytics/funnel/").content.decode()
    assert html.index('aria-label="This stream"') < html.index('aria-label="Analytics"')


def test_the_tabs_cost_no_query_once_the_page_knows_its_caller(
    people: dict[str, User], shop: dict[str, Any], rf: Any, django_assert_num_queries: Any
) -> None:
    """The page's door has read the caller's streams and roles already; the bar reads them again for free."""
    request = rf.get("/streams/shop/")
    request.user = User.objects.get(pk=people["Analyst"].pk)
    caller = page_caller(request)
    stream = shop["stream"]
    assert caller.reaches(stream.pk) and caller.actions()
    with django_assert_num_queries(0):
        tabs = stream_tabs(caller, stream.pk, stream.slug, "events")
    assert [(tab.section, tab.active) for tab in tabs] == [
        ("overview", False),
        ("events", True),
        ("analytics", False),
        ("schemas", False),
        ("alerts", False),
    ]


def test_a_superuser_outside_every_team_sees_every_tab(shop: dict[str, Any]) -> None:
    boss = User.objects.create_superuser("boss", email="boss@example.com", password="a-long-password-1")
    tabs = tab_bar(signed_in(boss).get("/streams/shop/schemas/").content.decode())
    assert {tab["href"] for tab in tabs} == {paths[0] for paths in SECTION_PAGES.values()}


def test_a_stream_outside_the_viewers_teams_is_not_found_and_shows_no_tabs(
    people: dict[str, User], shop: dict[str, Any]
) -> None:
    other: Stream = stream_create(slug="other", name="Other")
    response = signed_in(people["Admin"]).get(f"/streams/{other.slug}/schemas/")
    assert response.status_code == 404
    assert 'aria-label="This stream"' not in response.content.decode()


def test_an_operator_watches_processing_and_sees_only_what_opens(people: dict[str, User], shop: dict[str, Any]) -> None:
    """Processing health is for those who operate a stream too: the Operator's Analytics tab opens it, and the
    page offers no link to the events they may not read."""
    client = signed_in(people["Operator"])
    response = client.get("/streams/shop/analytics/processing/")
    assert response.status_code == 200
    html = response.content.decode()
    # The stream's Analytics tab opens processing, the one analytics page they may: no row of one tab below it.
    bar = {tab["label"]: tab for tab in tab_bar(html)}
    assert bar["Analytics"]["href"] == "/streams/shop/analytics/processing/" and "active" in bar["Analytics"]["class"]
    assert 'aria-label="Analytics"' not in html
    assert "/streams/shop/events/" not in html
    assert client.get("/api/v1/streams/shop/analytics/processing").status_code == 200
