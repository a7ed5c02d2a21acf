from django.apps import AppConfig


class RecommenderConfig(AppConfig):
    name = "recommender"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: services need the app registry, which is ready only now.
        from recommender.services.embeddings import embedding_profile_changed
        from recommender.services.hooks import register_profile_hook

        register_profile_hook(embedding_profile_changed)
        # Jobs ML admins can start from the admin (registry "Start a job").
        import recommender.jobs  # noqa: F401
