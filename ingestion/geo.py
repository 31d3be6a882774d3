"""Country of a client address, from the offline table the ``iptocc`` package ships.

``iptocc`` (pinned in requirements.txt) embeds the five Regional Internet
Registries' delegation files in its wheel and looks an address up in Rust:
no file or network access at run time, about 0.1 µs a lookup (measured in
ingestion/tests/test_tracker.py; the whole call, Python included, well under
1 µs), so the tracker's intake asks it on the request path, where the full
address is at hand before the stream's anonymisation masks it. The country is
the one the block is registered to (about 95 % agreement with commercial
databases for IPv4), as an ISO 3166-1 alpha-2 code; private, reserved and
unknown addresses have none. The data is as fresh as the pinned release:
upgrading the package updates it.
"""

from __future__ import annotations

import ipaddress

from iptocc import country_code

MAPPED_PREFIX = "::ffff:"


def country_of(ip: str | None) -> str | None:
    """The ISO country code of ``ip``'s registered block, or None (no address, private, unknown, not an IP)."""
    if not ip:
        return None
    if ip[:7].lower() == MAPPED_PREFIX:
        # An IPv4 client seen through an IPv6 socket: the table knows it by its IPv4 address.
        try:
            mapped = ipaddress.IPv6Address(ip).ipv4_mapped
        except ValueError:
            return None
        if mapped is not None:
            ip = str(mapped)
    return country_code(ip)
