from django.apps import AppConfig


class SafetyConfig(AppConfig):
    name = "safety"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # safety builds on recommender, which never imports it: it registers its reactions on
        # recommender's hooks here (docs/architecture.md).
        from recommender.feed.reads import ExclusionSource, register_exclusion_source
        from recommender.services.derived import register_profiles_hook
        from recommender.services.hooks import register_profile_hook
        from recommender.serving.health import register_model_health
        from safety.selectors import blocked_or_reported_by_user, blocked_or_reported_sql
        from safety.services import enqueue_classification, enqueue_classifications
        from safety.serving import classifier_status

        # Every profile create/update is classified after commit, in the safety queue; a bulk
        # write's profiles in batches.
        register_profile_hook(enqueue_classification)
        register_profiles_hook(enqueue_classifications)
        # Nobody sees a profile they blocked or reported, or that blocked them.
        register_exclusion_source(
            ExclusionSource(name="safety", sql=blocked_or_reported_sql(), by_user=blocked_or_reported_by_user)
        )
        register_model_health("safety", classifier_status)
        import safety.jobs  # noqa: F401  (the admin-startable retraining job)

        # The moderation queue's depth and oldest item in GET /metrics, computed when scraped.
        from core.metrics import register_scrape_source
        from safety.metrics import moderation_queue_metrics

        register_scrape_source("moderation_queue", moderation_queue_metrics)
