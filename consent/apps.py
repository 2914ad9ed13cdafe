from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"
    verbose_name = "Consent and privacy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from profiles import hooks

        from . import ingest, services
        from .privacy_entries import privacy_entries_register

        privacy_entries_register()

        hooks.ingest_filter_identifiers.subscribe(ingest.filter_suppressed)
        hooks.ingest_filter_profiles.subscribe(ingest.filter_consent)
        hooks.on_profiles_merged.subscribe(services.on_profiles_merged, many=services.on_profiles_merged_many)
        hooks.on_profiles_unmerged.subscribe(services.on_profiles_unmerged)
