"""factory_boy factories that build data through the real services."""

from __future__ import annotations

from typing import Any

import factory

from streams.models import ApiKeyKind, SchemaMode, Stream
from streams.services import IssuedKey, api_key_create, stream_create


class StreamFactory(factory.Factory[Stream]):
    """A stream made by ``stream_create`` (head row and, by default, the starter schemas)."""

    class Meta:
        model = Stream

    slug = factory.Sequence(lambda n: f"stream-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())
    schema_mode = SchemaMode.WARN
    with_starter_schemas = True

    @classmethod
    def _create(cls, model_class: type[Stream], *args: Any, **kwargs: Any) -> Stream:
        return stream_create(**kwargs)


class IssuedKeyFactory(factory.Factory[IssuedKey]):
    """An API key made by ``api_key_create``; ``.raw_key`` is the secret shown once."""

    class Meta:
        model = IssuedKey

    kind = ApiKeyKind.INGEST
    streams = factory.LazyFunction(lambda: [StreamFactory()])
    name = factory.Sequence(lambda n: f"key {n}")
    expires_at = None

    @classmethod
    def _create(cls, model_class: type[IssuedKey], *args: Any, **kwargs: Any) -> IssuedKey:
        return api_key_create(**kwargs)
