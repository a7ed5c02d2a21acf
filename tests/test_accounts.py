"""accounts sits below recommender (docs/architecture.md) and knows a user token's profile only by
its status values: they must stay those of recommender's ProfileStatus."""

from __future__ import annotations

from accounts.authentication import PROFILE_BANNED, PROFILE_ERASED
from recommender.models import ProfileStatus


def test_the_profile_statuses_accounts_acts_on_are_recommenders() -> None:
    assert ProfileStatus.BANNED.value == PROFILE_BANNED
    assert ProfileStatus.ERASED.value == PROFILE_ERASED
