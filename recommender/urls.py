"""recommender's URLs, included once at the root. Each block keeps the namespace reverse() uses:
the user-facing API under ``api/v1/`` (``api``), the service-key API under ``internal/v1/``
(``internal``), the feed (``feed`` and, for services, ``feed-ml`` under ``internal/ml/``) and the
batch ML API under ``api/v1/ml/`` (``ml``)."""

from django.urls import include, path

from recommender.api import batch, events, feed, health, profiles

api_urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    path("me", profiles.MeView.as_view(), name="me"),
    path("events/swipes", events.SwipeBatchView.as_view(), name="swipes"),
    path("events/impressions", events.ImpressionBatchView.as_view(), name="impressions"),
]

internal_urlpatterns = [
    path("profiles", profiles.ProfileCreateView.as_view(), name="profile-create"),
    path("profiles/batch", profiles.ProfileBatchView.as_view(), name="profile-batch"),
    path("profiles/<uuid:external_id>", profiles.ProfileDetailView.as_view(), name="profile-detail"),
    path("users/<uuid:external_id>/tokens", profiles.UserTokenView.as_view(), name="user-tokens"),
    path("events/matches", events.MatchEventsView.as_view(), name="matches"),
]

feed_urlpatterns = [
    path("feed", feed.FeedView.as_view(), name="feed"),
]

feed_ml_urlpatterns = [
    path("recommendations", feed.RecommendationsView.as_view(), name="recommendations"),
]

ml_urlpatterns = [
    path("embeddings/batch", batch.EmbeddingsBatchView.as_view(), name="embeddings-batch"),
    path("similarity/batch", batch.SimilarityBatchView.as_view(), name="similarity-batch"),
    path("profiles/rank/batch", batch.RankBatchView.as_view(), name="rank-batch"),
    path("health", batch.MlHealthView.as_view(), name="health"),
]

urlpatterns = [
    path("api/v1/", include((api_urlpatterns, "api"))),
    path("internal/v1/", include((internal_urlpatterns, "internal"))),
    path("api/v1/", include((feed_urlpatterns, "feed"))),
    path("internal/ml/", include((feed_ml_urlpatterns, "feed-ml"))),
    path("api/v1/ml/", include((ml_urlpatterns, "ml"))),
]
