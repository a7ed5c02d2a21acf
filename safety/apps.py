from django.apps import AppConfig


class SafetyConfig(AppConfig):
    name = "safety"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every profile create/update is classified after commit, in the safety queue.
        from recommender.services.hooks import register_profile_hook
        from safety.services import enqueue_classification

        register_profile_hook(enqueue_classification)
        import safety.jobs  # noqa: F401  (the admin-startable retraining job)
