"""The collaborative-filtering pipeline, Django side: extract events to Parquet, split them by
time, train, evaluate (each step a service here, a management command and a Celery task).

The models themselves live in the framework-free :mod:`recommender.ml.collab`.
"""
