from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for its side effect: registers the OpenAPI security schemes of the bearer
        # credentials (drf-spectacular) before any schema is built.
        import accounts.openapi  # noqa: F401
