"""The URL root: the admin, one include per app, the OpenAPI schema with its readers, and the
operators' probes and metrics (plain Django views, outside the API and its schema)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core.probes import livez, metrics_view, readyz

urlpatterns = [
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # api/v1/ (api, feed), internal/v1/ (internal), internal/ml/ (feed-ml), api/v1/ml/ (ml)
    path("", include("recommender.urls")),
    path("", include("safety.urls")),  # api/v1/ (safety_api) and moderation/ (safety_console)
    # OpenAPI 3 schema (YAML, or JSON with ?format=json) and its two readers, served offline.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema/swagger-ui/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/schema/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="drf_spectacular/redoc_offline.html"),
        name="redoc",
    ),
]
