"""Indexes of the log for its readers by user and by session (docs/QUERIES.md has the plans and their cost).

Built with CREATE INDEX CONCURRENTLY, so a live installation keeps appending
while they are built (which cannot run inside a transaction: ``atomic = False``).
Partial: anonymous events have no user id, and they are left out of that index.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0006_stream_retention_bounds"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="logentry",
            index=models.Index(
                fields=["stream", "user_id", "event_time"],
                condition=models.Q(user_id__isnull=False),
                name="log_stream_user_time",
            ),
        ),
        AddIndexConcurrently(
            model_name="logentry",
            index=models.Index(
                fields=["stream", "session_id", "event_time"],
                condition=models.Q(session_id__isnull=False),
                name="log_stream_session_time",
            ),
        ),
    ]
