from django.urls import path

from recommender.api import health, views

app_urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    path("me", views.MeView.as_view(), name="me"),
    path("events/swipes", views.SwipeBatchView.as_view(), name="swipes"),
    path("events/impressions", views.ImpressionBatchView.as_view(), name="impressions"),
]

internal_urlpatterns = [
    path("profiles", views.ProfileCreateView.as_view(), name="profile-create"),
    path("profiles/batch", views.ProfileBatchView.as_view(), name="profile-batch"),
    path("profiles/<uuid:external_id>", views.ProfileDetailView.as_view(), name="profile-detail"),
    path("users/<uuid:external_id>/tokens", views.UserTokenView.as_view(), name="user-tokens"),
    path("events/matches", views.MatchEventsView.as_view(), name="matches"),
]
