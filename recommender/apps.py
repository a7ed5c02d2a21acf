from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    name = "recommender"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: services need the app registry, which is ready only now.
        # The imports of modules for their side effects register: ML admins' jobs (registry
        # "Start a job") and the system checks of the ML configuration (manage.py check, runserver,
        # migrate).
        import recommender.checks
        import recommender.jobs  # noqa: F401
        from core.health import register_readiness
        from core.probes import register_warmup
        from recommender.api.error_responses import register_error_responses
        from recommender.readiness import serving_readiness, serving_warmup
        from recommender.services.embeddings import embedding_profile_changed
        from recommender.services.hooks import register_profile_hook

        register_profile_hook(embedding_profile_changed)
        # What this process serves, in the health report; recommender's exceptions in the API's error shape.
        register_readiness(serving_readiness)
        # What this process must hold before GET /readyz lets the balancer send it feeds.
        register_warmup(serving_warmup)
        register_error_responses()
        # What each arm of an A/B experiment achieved, for the registry's experiment report.
        from recommender.experiments import arm_outcome
        from registry.experiments import register_outcome_reader

        register_outcome_reader(arm_outcome)
