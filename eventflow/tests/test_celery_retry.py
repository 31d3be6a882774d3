from eventflow.celery import RETRY_BACKOFF_MAX, retry_countdown


def test_retry_countdown_doubles_with_jitter_and_is_capped():
    for retries in range(15):
        ceiling = min(RETRY_BACKOFF_MAX, 2.0 ** (retries + 1))
        values = [retry_countdown(retries) for _ in range(200)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
        assert len(set(values)) > 1  # jittered, so retries of many tasks spread out
    assert max(retry_countdown(40) for _ in range(50)) <= RETRY_BACKOFF_MAX
