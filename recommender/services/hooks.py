"""What happens after a profile changes, run once the transaction has committed.

Derived data (embeddings, the ANN index, caches, safety scores) is rebuilt from the database, so
these hooks only enqueue work; losing one never loses accepted data. A hook receives the profile
id and reads the profile's current state itself: an active profile is (re)indexed, a hidden,
banned or erased one is taken out.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from recommender.models import Profile

ProfileHook = Callable[[int], None]

# Apps register their reactions at start-up (in AppConfig.ready), so the profile services stay
# ignorant of embeddings, indexing and safety.
_hooks: list[ProfileHook] = []


def register_profile_hook(hook: ProfileHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def on_profile_changed(profile: Profile) -> None:
    profile_id = profile.pk
    for hook in _hooks:
        transaction.on_commit(lambda hook=hook: hook(profile_id))
