"""The development launcher: ``make run``'s supervisor and its embedded PostgreSQL and Redis.

Only for a development machine and the test suite; nothing in the application
(eventflow/, streams/, ingestion/, consumers/, analytics/) imports it.
"""
