from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The active versions in GET /metrics, computed when scraped (core never imports registry).
        from core.metrics import register_scrape_source
        from registry.metrics import active_model_metrics

        register_scrape_source("registry", active_model_metrics)
