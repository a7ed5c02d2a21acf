"""Framework-free safety classifier: rules, text heads on MiniLM embeddings, behaviour signals.

Nothing here imports Django; callers pass texts, embeddings and behaviour numbers in.
"""

LABELS: tuple[str, ...] = ("inappropriate", "spam_scam", "harassment", "fake_profile")
TEXT_LABELS: tuple[str, ...] = ("inappropriate", "spam_scam", "harassment")
