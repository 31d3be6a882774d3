"""The dashboard's template filters."""

from __future__ import annotations

import pytest

from eventflow.templatetags.dashboard import compact


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (0, "0"),
        (9_999, "9,999"),
        (10_000, "10k"),
        (12_345, "12.3k"),
        (999_949, "999.9k"),
        (999_950, "1M"),
        (1_000_000, "1M"),
        (4_560_000, "4.6M"),
        (999_949_999, "999.9M"),
        (999_950_000, "1B"),
        (-12_345, "-12.3k"),
    ],
)
def test_counts_read_as_people_read_them_never_as_1000_of_a_unit(value: int | None, shown: str) -> None:
    assert compact(value) == shown
