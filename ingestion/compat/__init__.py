"""Other products' wire formats, translated into native envelopes and sent through the native intake.

One module per format (``segment``, ``posthog``, ``snowplow``, ``mixpanel``,
``plausible``) turns a request body into envelopes; ``body`` decodes bodies
(gzip, base64, form fields, lz-string); ``intake`` is the door they all pass:
the key, the stream, the rate limit, ``events_ingest``, and each format's own
answers. The routes are in ``ingestion/compat_urls.py``.
"""
