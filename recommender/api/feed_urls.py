"""Feed routes, included by ``patra/urls.py``::

path("api/v1/", include((feed_urls.app_urlpatterns, "feed"))),
path("internal/ml/", include((feed_urls.internal_ml_urlpatterns, "feed-ml"))),
"""

from django.urls import path

from recommender.api import feed

app_urlpatterns = [
    path("feed", feed.FeedView.as_view(), name="feed"),
]

internal_ml_urlpatterns = [
    path("recommendations", feed.RecommendationsView.as_view(), name="recommendations"),
]
