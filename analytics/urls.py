from django.urls import URLPattern, URLResolver

# The event query and export (analytics/query_api.py) and the analytics endpoints (analytics/api.py).
urlpatterns: list[URLPattern | URLResolver] = []
