from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from recommender.api import feed_urls, ml_urls
from recommender.api.urls import app_urlpatterns, internal_urlpatterns

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((app_urlpatterns, "api"))),
    path("internal/v1/", include((internal_urlpatterns, "internal"))),
    path("api/v1/", include((feed_urls.app_urlpatterns, "feed"))),
    path("internal/ml/", include((feed_urls.internal_ml_urlpatterns, "feed-ml"))),
    path("api/v1/ml/", include((ml_urls.urlpatterns, "ml"))),
    path("api/v1/", include("safety.urls_api")),
    path("moderation/", include("safety.urls_console")),
    # OpenAPI 3 schema (YAML, or JSON with ?format=json) and its two readers, served offline.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema/swagger-ui/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/schema/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="drf_spectacular/redoc_offline.html"),
        name="redoc",
    ),
]
