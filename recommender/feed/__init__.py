"""The whole reciprocal feed: ``pipeline`` (``feed_for`` as named stages), ``reads`` (swipe
history, exclusions and their sources, the live check), ``features`` (a profile as the matching
code sees it), ``plan`` (index, collaborative model, weights and experiment arms resolved once
per feed), ``store`` (the in-process candidate store), ``scoring`` (the maths) and ``rank`` (the
ML API's ranking of given candidates with the same scoring).
"""
