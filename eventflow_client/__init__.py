"""A small client for reading EventFlow streams: a consumer-group loop and a webhook signature check.

Standard library plus ``requests``; it does not import Django or the server's code.
"""

from .consumer import Batch, Consumer, EventFlowError
from .webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSignatureError,
    verify_signature,
    verify_webhook_request,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Batch",
    "Consumer",
    "EventFlowError",
    "WebhookSignatureError",
    "verify_signature",
    "verify_webhook_request",
]
