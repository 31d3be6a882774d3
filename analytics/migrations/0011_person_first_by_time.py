from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built CONCURRENTLY: appends go on while it builds. The table has a row per person and
    # stream, not per event (a 10M-event installation holds its people, not its events).
    atomic = False

    dependencies = [
        ("analytics", "0010_sketch_spans"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="personfirst",
            index=models.Index(fields=["stream", "type", "first_at"], name="person_first_stream_first_at"),
        ),
    ]
