from django.contrib import admin
from django.urls import include, path

from recommender.api.urls import app_urlpatterns, internal_urlpatterns

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include((app_urlpatterns, "api"))),
    path("internal/v1/", include((internal_urlpatterns, "internal"))),
]
