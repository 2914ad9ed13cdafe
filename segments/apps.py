from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"
    verbose_name = "Segments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from profiles import hooks
        from segments import realtime

        hooks.on_profile_activity.subscribe(realtime.on_profile_activity)
        hooks.on_profiles_merged.subscribe(realtime.on_profiles_merged, many=realtime.on_profiles_merged_many)
        hooks.on_profiles_unmerged.subscribe(realtime.on_profiles_unmerged)
        from consent import hooks as consent_hooks

        consent_hooks.on_consent_changed.subscribe(realtime.on_consent_changed)
        try:
            from consent.privacy import privacy_register
        except ImportError:  # pragma: no cover - consent is part of cdp
            return
        from segments import services
        from segments.models import SegmentMembership

        privacy_register(
            name="segments",
            models=[SegmentMembership],
            export=services.privacy_export,
            erase=services.privacy_erase,
            order=70,
        )
