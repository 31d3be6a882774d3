from django.db import migrations, models

import streams.models


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0008_log_api_key"),
    ]

    operations = [
        # A constant default: PostgreSQL adds the column without rewriting the table.
        migrations.AddField(
            model_name="stream",
            name="allowed_origins",
            field=models.JSONField(blank=True, default=list, validators=[streams.models.validate_origins]),
        ),
    ]
