from django.contrib import admin
from django.urls import include, path

from recommender.api import feed_urls
from recommender.api.urls import app_urlpatterns, internal_urlpatterns

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((app_urlpatterns, "api"))),
    path("internal/v1/", include((internal_urlpatterns, "internal"))),
    path("api/v1/", include((feed_urls.app_urlpatterns, "feed"))),
    path("internal/ml/", include((feed_urls.internal_ml_urlpatterns, "feed-ml"))),
    path("api/v1/", include("safety.urls_api")),
    path("moderation/", include("safety.urls_console")),
]
