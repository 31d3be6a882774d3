import pytest

from ingestion.enrichment import anonymize_ip, enrich, user_agent_details

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.mark.parametrize(
    ("user_agent", "browser", "os", "device_type"),
    [
        (CHROME_WINDOWS, "Chrome", "Windows", "desktop"),
        (IPAD, "Mobile Safari", "iOS", "tablet"),
        (ANDROID_PHONE, "Chrome Mobile", "Android", "mobile"),
        (ANDROID_TABLET, "Chrome", "Android", "tablet"),
        (GOOGLEBOT, "Googlebot", None, "bot"),
    ],
)
def test_user_agent_details(user_agent, browser, os, device_type):
    details = user_agent_details(user_agent)
    assert details["browser"] == browser
    assert details["os"] == os
    assert details["device_type"] == device_type


def test_user_agent_versions():
    details = user_agent_details(CHROME_WINDOWS)
    assert details["browser_version"] == "131.0"
    assert details["os_version"] == "10"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12:3456:789a:bcde:f012", "2001:db8:abcd::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("not an ip", None),
    ],
)
def test_ip_anonymisation(raw, masked):
    assert anonymize_ip(raw) == masked


def test_enrich_keeps_whole_ip_only_when_the_stream_says_so():
    context = {"ip": "203.0.113.77"}
    assert enrich(payload={"ip": "203.0.113.77"}, context=context, anonymize=True).payload["ip"] == "203.0.113.0"
    kept = enrich(payload={}, context=context, anonymize=False)
    assert kept.context["ip"] == "203.0.113.77"
    assert context == {"ip": "203.0.113.77"}  # input untouched


def test_enrich_referrer_and_campaign():
    result = enrich(
        payload={"referrer": "https://news.example.org/a"},
        context={
            "campaign": {"source": "mail", "name": "ignored-key"},
            "page": {"url": "https://s.example/?utm_medium=email"},
        },
        anonymize=True,
    )
    assert result.enrichment["referrer_host"] == "news.example.org"
    assert result.enrichment["utm"] == {"utm_medium": "email", "utm_source": "mail"}
