from django.apps import AppConfig


class RecommendationsConfig(AppConfig):
    name = "recommendations"
    verbose_name = "Recommendations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from profiles import hooks

        from . import privacy

        hooks.on_events_stored.subscribe(privacy.on_events_stored)
        hooks.on_profiles_merged.subscribe(privacy.on_profiles_merged, many=privacy.on_profiles_merged_many)
        privacy.register()
        from consent import hooks as consent_hooks

        consent_hooks.on_consent_changed.subscribe(privacy.on_consent_changed)
        from .experiments import units

        units.register()  # experiments: unit rows follow events, consent, unmerges and erasure
