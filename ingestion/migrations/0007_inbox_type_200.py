"""Event types of up to 200 characters (streams/event_types.py): a longer varchar is a catalog change in PostgreSQL, no rewrite."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0006_inbox_api_key"),
    ]

    operations = [
        migrations.AlterField(
            model_name="inboxevent",
            name="type",
            field=models.CharField(max_length=200),
        ),
    ]
