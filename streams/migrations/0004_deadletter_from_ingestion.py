"""Dead letters belong to streams now (they are written by every stage); the table stays where it is.

Only Django's state moves: the table, its rows, indexes and constraints are
untouched. The content type moves with the model, so the permissions people
and roles already hold on dead letters keep working.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_type_to_streams(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="streams", model="deadletter").exists():
        ContentType.objects.filter(app_label="ingestion", model="deadletter").update(app_label="streams")


def content_type_to_ingestion(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="ingestion", model="deadletter").exists():
        ContentType.objects.filter(app_label="streams", model="deadletter").update(app_label="ingestion")


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0003_roles"),
        ("ingestion", "0004_inbox_first_failed_at"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="DeadLetter",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("event_id", models.CharField(max_length=128)),
                        ("event", models.JSONField()),
                        (
                            "stage",
                            models.CharField(
                                choices=[
                                    ("validate", "Validate"),
                                    ("enrich", "Enrich"),
                                    ("append", "Append"),
                                    ("deliver", "Deliver (webhook)"),
                                    ("consume", "Consume (consumer group)"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("subscriber", models.CharField(blank=True, default="", max_length=200)),
                        ("log_offset", models.BigIntegerField(blank=True, null=True)),
                        ("error_class", models.CharField(max_length=200)),
                        ("error_message", models.TextField(blank=True, default="")),
                        ("traceback", models.TextField(blank=True, default="")),
                        ("attempts", models.PositiveIntegerField(default=1)),
                        ("first_failed_at", models.DateTimeField()),
                        ("last_failed_at", models.DateTimeField()),
                        (
                            "status",
                            models.CharField(
                                choices=[("open", "Open"), ("replayed", "Replayed"), ("discarded", "Discarded")],
                                default="open",
                                max_length=16,
                            ),
                        ),
                        ("acted_at", models.DateTimeField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "acted_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "stream",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="dead_letters",
                                to="streams.stream",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "ingestion_deadletter",
                        "ordering": ["-last_failed_at"],
                        "indexes": [
                            models.Index(fields=["status", "stage", "last_failed_at"], name="deadletter_status_stage"),
                            models.Index(fields=["stream", "event_id"], name="deadletter_stream_event"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to_streams, content_type_to_ingestion),
    ]
