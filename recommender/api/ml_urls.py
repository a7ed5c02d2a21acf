"""ML API routes, included by ``patra/urls.py`` under ``api/v1/ml/``."""

from django.urls import path

from recommender.api import ml

urlpatterns = [
    path("embeddings/batch", ml.EmbeddingsBatchView.as_view(), name="embeddings-batch"),
    path("similarity/batch", ml.SimilarityBatchView.as_view(), name="similarity-batch"),
    path("profiles/rank/batch", ml.RankBatchView.as_view(), name="rank-batch"),
    path("health", ml.MlHealthView.as_view(), name="health"),
]
