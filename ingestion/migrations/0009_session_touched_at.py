"""Session state gets ``touched_at`` (when processing last used the row) and an index retention deletes by.

Works on a live installation. The column's default is ``now()``, which
PostgreSQL evaluates once and keeps in the catalog: existing rows read the
migration's time and nothing rewrites the table; the ALTER needs ACCESS
EXCLUSIVE only for that catalog change, and gives up after 5 s rather than
queue the processor's batches behind a long transaction (run the migration
again). The index is built CONCURRENTLY (appends go on), which cannot run in a
transaction: ``atomic = False``. Rows already there expire ``retention_days``
after the migration, since nothing older is known about their use.
"""

import django.db.models.functions.datetime
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("ingestion", "0008_visitor_salt"),
    ]

    operations = [
        migrations.RunSQL("SET lock_timeout = '5s'", "RESET lock_timeout"),
        migrations.AddField(
            model_name="sessionstate",
            name="touched_at",
            field=models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
        ),
        migrations.RunSQL("RESET lock_timeout", "SET lock_timeout = '5s'"),
        AddIndexConcurrently(
            model_name="sessionstate",
            index=models.Index(fields=["stream", "touched_at"], name="session_stream_touched"),
        ),
    ]
