"""The dead letter model moved to ``streams`` (streams/0004); its table stays, so only the state changes here."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0004_inbox_first_failed_at"),
        ("streams", "0004_deadletter_from_ingestion"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="DeadLetter")],
            database_operations=[],
        ),
    ]
