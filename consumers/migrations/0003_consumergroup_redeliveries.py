from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("consumers", "0002_webhook_group_cascade"),
    ]

    operations = [
        migrations.AddField(
            model_name="consumergroup",
            name="redeliveries",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
