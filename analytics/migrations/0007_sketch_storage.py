"""Unique-user sketches stored inline and uncompressed, with room on each page for updates.

A dense sketch (HLL_4, 2^12 registers) is about 2.1 kB: just over the size at which
PostgreSQL moves a value to TOAST and tries to compress it, which a sketch's
registers resist. Each batch rewrites some 150 of them; measured on batches of
1,000 events (bench/rollup_cost.py), the sketches' write took 16.5 ms a batch
toasted and 12.5 ms inline. A sketch is at most a few kB, well inside a page.
Catalog changes only: rows already written stay as they are until next rewritten.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0006_alert_rules"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE analytics_user_sketch ALTER COLUMN sketch SET STORAGE PLAIN;"
            " ALTER TABLE analytics_user_sketch SET (fillfactor = 70);",
            "ALTER TABLE analytics_user_sketch ALTER COLUMN sketch SET STORAGE EXTENDED;"
            " ALTER TABLE analytics_user_sketch RESET (fillfactor);",
        ),
    ]
