"""Ingestion has no admin pages of its own: its dead letters are in streams' (streams/dead_letter_admin.py)."""
