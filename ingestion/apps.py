from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Ingestion"

    def ready(self) -> None:
        # In ready(): models and services can't be imported while the app registry is loading.
        from streams.dead_letters import dead_letter_replayer_register
        from streams.models import PROCESSING_STAGES

        from .dead_letters import processing_replay

        dead_letter_replayer_register(stages=PROCESSING_STAGES, replayer=processing_replay)
