from django.apps import AppConfig


class ConsumersConfig(AppConfig):
    name = "consumers"
    verbose_name = "Consumers"

    def ready(self) -> None:
        # In ready(): models and services can't be imported while the app registry is loading.
        from streams.dead_letters import dead_letter_replayer_register
        from streams.models import DeadLetterStage

        from .kafka_services import kafka_source_replay
        from .services import consumer_group_redeliver
        from .webhook_services import webhook_redeliver

        dead_letter_replayer_register(stages=[DeadLetterStage.CONSUME], replayer=consumer_group_redeliver)
        dead_letter_replayer_register(stages=[DeadLetterStage.DELIVER], replayer=webhook_redeliver)
        dead_letter_replayer_register(stages=[DeadLetterStage.SOURCE], replayer=kafka_source_replay)
