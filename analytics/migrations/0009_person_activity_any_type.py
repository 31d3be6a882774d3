"""The per-person activity rollup keeps any-type activity only (analytics/activity.py): per-type rows go."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0008_person_activity"),
    ]

    operations = [
        migrations.RunSQL(
            "DELETE FROM analytics_person_day WHERE type <> ''; DELETE FROM analytics_person_first WHERE type <> '';",
            # Nothing reads per-type rows any more; rollups_rebuild recounts what is kept.
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
