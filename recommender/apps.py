from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    name = "recommender"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: services need the app registry, which is ready only now.
        # The imports of modules for their side effects register: ML admins' jobs (registry
        # "Start a job"), the system checks of the ML configuration (manage.py check, runserver,
        # migrate) and the OpenAPI security schemes of the bearer credentials (drf-spectacular).
        import recommender.api.schema
        import recommender.checks
        import recommender.jobs  # noqa: F401
        from recommender.services.embeddings import embedding_profile_changed
        from recommender.services.hooks import register_profile_hook

        register_profile_hook(embedding_profile_changed)
