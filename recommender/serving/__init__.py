"""What a serving process holds in memory: the ANN index, the collaborative model, the ranker and
the text encoder, each kept fresh on :class:`registry.serving.ActiveModel` (one hot-swap mechanism)."""
