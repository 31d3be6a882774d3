from django.db import migrations, models

# Alerts raised before this migration were grouped as their rule is grouped now: the best record there is.
# (A constant default adds the column without rewriting the table; alerts are few, one UPDATE fills them.)
BACKFILL_SQL = """
UPDATE analytics_alert a SET group_by = r.group_by
FROM analytics_alert_rule r
WHERE r.id = a.rule_id AND r.group_by <> ''
"""


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0011_person_first_by_time"),
    ]

    operations = [
        migrations.AddField(
            model_name="alert",
            name="group_by",
            field=models.CharField(blank=True, default="", max_length=300),
        ),
        migrations.RunSQL(BACKFILL_SQL, migrations.RunSQL.noop),
    ]
