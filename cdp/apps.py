from django.apps import AppConfig


class CdpConfig(AppConfig):
    name = "cdp"
    verbose_name = "Platform: API keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .api import cors, schema  # noqa: F401 - schema registers the OpenAPI auth extension

        cors.connect()
