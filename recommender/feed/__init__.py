"""The reciprocal feed's building blocks: the in-process candidate store and the scoring maths.

The pipeline that ties them to the database, the index and the embeddings lives in
``recommender.services.feed``.
"""
