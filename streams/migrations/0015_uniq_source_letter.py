"""One dead letter per Kafka message: a partial unique index, built without blocking the letters' writers."""

from django.db import migrations, models


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction.
    atomic = False

    dependencies = [
        ("streams", "0014_dead_letter_stage_source"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(
                    model_name="deadletter",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("stage", "source")),
                        fields=("stream", "event_id"),
                        name="uniq_source_letter",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uniq_source_letter"
                    " ON ingestion_deadletter (stream_id, event_id) WHERE stage = 'source'",
                    reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS uniq_source_letter",
                ),
            ],
        ),
    ]
