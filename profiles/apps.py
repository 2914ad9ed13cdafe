from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import hooks, schema

        hooks.on_events_stored.subscribe(schema.on_events_stored)  # the schema registry follows ingestion
