"""Event types of up to 200 characters (streams/event_types.py): a longer varchar is a catalog change in PostgreSQL, no rewrite."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0004_rollups"),
    ]

    operations = [
        migrations.AlterField(model_name=model, name="type", field=models.CharField(max_length=200))
        for model in ("minutecount", "hourcount", "daycount", "hourdimension", "daydimension")
    ]
