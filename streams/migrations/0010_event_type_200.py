"""Event types of up to 200 characters (streams/event_types.py): a longer varchar is a catalog change in PostgreSQL, no rewrite."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0009_stream_allowed_origins"),
    ]

    operations = [
        migrations.AlterField(
            model_name="eventschema",
            name="event_type",
            field=models.CharField(max_length=200),
        ),
        migrations.AlterField(
            model_name="logentry",
            name="type",
            field=models.CharField(max_length=200),
        ),
    ]
