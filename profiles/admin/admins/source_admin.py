"""Sources, their write keys (shown once, on creation and rotation), the browser origins allowed to
use them and the secret their shop's backend signs user tokens with (docs/storefront.md)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from ... import services
from ...models import Source
from ...storefront import ANY_ORIGIN, InvalidOrigin, origins_normalize


class SourceForm(forms.ModelForm):
    allowed_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="Shop page origins whose browsers may send with this write key, one per line "
        "(scheme://host[:port], e.g. https://shop.example.com). '*' allows every origin: only on purpose. "
        "Empty: server-side calls only.",
    )

    class Meta:
        model = Source
        fields = ["name", "is_active", "allowed_origins"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and self.instance.pk:
            self.initial["allowed_origins"] = "\n".join(self.instance.allowed_origins or [])

    def clean_allowed_origins(self) -> list[str]:
        lines = [line.strip() for line in (self.cleaned_data.get("allowed_origins") or "").splitlines()]
        try:
            return origins_normalize([line for line in lines if line])
        except InvalidOrigin as exc:
            raise forms.ValidationError(str(exc)) from exc


class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = ["name", "write_key_prefix", "origins", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    readonly_fields = ["write_key_prefix", "user_token_secret", "created_at"]
    fields = ["name", "is_active", "allowed_origins", "write_key_prefix", "user_token_secret", "created_at"]
    actions = ["rotate_write_key", "rotate_user_token_secret"]

    @admin.display(description="allowed origins")
    def origins(self, obj: Source) -> str:
        if ANY_ORIGIN in (obj.allowed_origins or []):
            return "any origin (*)"
        return ", ".join(obj.allowed_origins or []) or "none (server-side only)"

    def save_model(self, request, obj, form, change):
        origins = form.cleaned_data.get("allowed_origins") or []
        if change:
            super().save_model(request, obj, form, change)
            services.source_set_allowed_origins(source=obj, allowed_origins=origins)
            return
        source, raw = services.source_create(name=obj.name, allowed_origins=origins)
        obj.pk = source.pk
        obj.__dict__.update(source.__dict__)
        messages.warning(request, f"Write key for {source.name} (copy it now, it is not shown again): {raw}")

    @admin.action(description="Rotate the write key of the selected sources")
    def rotate_write_key(self, request, queryset):
        count = 0
        for source in queryset:
            _, raw = services.source_rotate_write_key(source=source)
            messages.warning(request, f"New write key for {source.name} (shown once): {raw}")
            count += 1
        messages.success(request, f"Rotated {count} write key(s).")

    @admin.action(description="Rotate the user-token secret of the selected sources")
    def rotate_user_token_secret(self, request, queryset):
        count = 0
        for source in queryset:
            services.source_rotate_user_token_secret(source=source)
            count += 1
        messages.success(request, f"Rotated {count} user-token secret(s); tokens signed with the old one stop working.")
