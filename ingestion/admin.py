"""Ingestion has no admin pages of its own: its dead letters are in streams' (streams/dead_letter_admin.py)."""

from streams import dead_letter_admin  # noqa: F401  (registers the dead letter admin)
