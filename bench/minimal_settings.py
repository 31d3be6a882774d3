"""The product's settings, serving only the minimal intake view of ``bench.minimal_urls``.

Same middleware, database options and process model as the product, so the
difference between the two servers is the intake code alone.
"""

from eventflow.settings import *  # noqa: F403

ROOT_URLCONF = "bench.minimal_urls"
