"""The event type rule, defined once: the envelope check, schemas, filters and URLs all use it.

SDKs name events as people read them ("Order Completed", "$pageview",
"checkout:step 2"), so a type is 1 to 200 characters of letters, digits,
spaces and punctuation: anything but control characters (C0, DEL, C1 and the
Unicode line and paragraph separators), and not only spaces.
"""

from __future__ import annotations

import re

EVENT_TYPE_MAX_LENGTH = 200
# One pattern for Python, serializers (DRF RegexField) and the OpenAPI document (ECMA regex):
# "$(?!\n)" is the end of the text in both (Python's bare "$" also matches before a final newline).
EVENT_TYPE_REGEX = r"^(?!\s*$)[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,200}$(?!\n)"
EVENT_TYPE_RE = re.compile(EVENT_TYPE_REGEX)
EVENT_TYPE_RULE = "1 to 200 characters: letters, digits, spaces and punctuation, no control characters"


def is_event_type(value: object) -> bool:
    return isinstance(value, str) and EVENT_TYPE_RE.match(value) is not None
