from django.urls import URLPattern, URLResolver, path

from .audit_api import AuditListView

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/v1/audit", AuditListView.as_view(), name="audit-list"),
]
