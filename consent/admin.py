"""Admin of consent: purposes (managed here), the ledger (read-only), the data-subject request queue
with due dates, overdue highlighted and the verify / run / download actions, the suppression list."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from profiles.normalize import normalize_identifier

from .models import ConsentRecord, DataSubjectRequest, Purpose, RequestAuditEntry, RequestStatus, Suppression
from .requests import (
    IDENTIFIER_KINDS,
    export_archive_downloaded,
    privacy_request_create,
    privacy_request_enqueue,
    privacy_request_verify,
)
from .selectors import profile_live_id
from .services import ConsentError, consent_record_for_identifiers


def _profile_link(profile_id) -> str:
    if not profile_id:
        return "—"
    url = reverse("admin:profiles_profile_change", args=[profile_id])
    return format_html('<a href="{}">{}</a>', url, str(profile_id)[:8])


@admin.register(Purpose)
class PurposeAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "legal_basis", "policy_version", "default_granted", "validity_days", "is_active"]
    list_editable = ["is_active"]
    ordering = ["position", "key"]

    def get_readonly_fields(self, request, obj=None):
        return ["key"] if obj else []  # the key is what the API, selectors and records speak

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the ledger refers to purposes; deactivate instead


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin):
    """The ledger: append-only, so nothing here can be added, changed or deleted (the database refuses too)."""

    list_display = [
        "recorded_at",
        "profile",
        "purpose",
        "granted",
        "source",
        "policy_version",
        "expires_at",
        "anonymised",
    ]
    list_filter = ["purpose", "granted", "source", ("anonymised_at", admin.EmptyFieldListFilter)]
    list_select_related = ["purpose"]
    search_fields = ["=profile__id"]
    date_hierarchy = "recorded_at"
    show_full_result_count = False

    @admin.display(description="profile")
    def profile(self, obj: ConsentRecord):
        return "anonymised" if obj.anonymised_at else _profile_link(obj.profile_id)

    @admin.display(description="anonymised", boolean=True)
    def anonymised(self, obj: ConsentRecord) -> bool:
        return obj.anonymised_at is not None

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AuditInline(admin.TabularInline):
    model = RequestAuditEntry
    fields = ["at", "actor", "action", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class RequestAddForm(forms.ModelForm):
    profile_id = forms.UUIDField(required=False, help_text="the profile, or give an identifier below")
    identifier_kind = forms.ChoiceField(choices=[("", "—"), *[(k, k) for k in IDENTIFIER_KINDS]], required=False)
    identifier_value = forms.CharField(required=False, max_length=255)

    class Meta:
        model = DataSubjectRequest
        fields = ["kind"]

    def clean(self):
        data = super().clean()
        if data.get("profile_id"):
            if profile_live_id(profile_id=data["profile_id"]) is None:
                self.add_error("profile_id", "No profile with this id.")
        elif data.get("identifier_kind") and data.get("identifier_value"):
            if not normalize_identifier(data["identifier_kind"], data["identifier_value"]):
                self.add_error("identifier_value", f"Not a usable {data['identifier_kind']}.")
        else:
            raise forms.ValidationError("Give the profile id, or an identifier kind and value.")
        return data


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(admin.ModelAdmin):
    """The request queue: oldest deadline first, overdue in red."""

    list_display = [
        "short_id",
        "kind",
        "status",
        "channel",
        "subject_hint",
        "received_at",
        "due",
        "progress_display",
        "verified_at",
    ]
    list_filter = ["status", "kind", "channel"]
    ordering = ["due_at"]
    inlines = [AuditInline]
    actions = ["verify", "run", "download"]
    search_fields = ["=id", "subject_hint"]

    def get_inline_instances(self, request, obj=None):
        return super().get_inline_instances(request, obj) if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = RequestAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["kind", "profile_id", "identifier_kind", "identifier_value"]
        return [
            "id",
            "kind",
            "status",
            "channel",
            "subject_hint",
            "profile_link",
            "received_at",
            "due_at",
            "verified_at",
            "verified_by",
            "requested_by",
            "started_at",
            "finished_at",
            "progress_display",
            "progress_message",
            "result",
            "error",
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # requests are the proof that they were honoured

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data  # validated by RequestAddForm.clean
        created = privacy_request_create(
            kind=data["kind"],
            channel="admin",
            requested_by=f"admin:{request.user.get_username()}",
            profile_id=str(data["profile_id"]) if data.get("profile_id") else None,
            identifier_kind=data.get("identifier_kind") or None,
            identifier_value=data.get("identifier_value") or None,
        )
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if not k.startswith("_")})
        obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        pass  # the audit is written by the service

    @admin.display(description="id")
    def short_id(self, obj: DataSubjectRequest) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="profile")
    def profile_link(self, obj: DataSubjectRequest):
        return _profile_link(obj.profile_id)

    @admin.display(description="due", ordering="due_at")
    def due(self, obj: DataSubjectRequest):
        open_ = obj.status not in (RequestStatus.DONE, RequestStatus.REJECTED)
        if open_ and obj.due_at < timezone.now():
            return format_html('<strong class="overdue" style="color:#b00020">{} — overdue</strong>', obj.due_at.date())
        return obj.due_at.date()

    @admin.display(description="progress")
    def progress_display(self, obj: DataSubjectRequest):
        percent = round(obj.progress * 100)
        return format_html(
            '<progress max="100" value="{}"></progress> {}% {}', percent, percent, obj.progress_message or ""
        )

    def _each(self, request, queryset, service, done_message: str) -> None:
        """Apply a service to each selected request; refusals are reported, the rest counted."""
        done = 0
        for obj in queryset:
            try:
                service(request=obj, actor=f"admin:{request.user.get_username()}")
                done += 1
            except ConsentError as exc:
                self.message_user(request, f"{obj}: {exc}", messages.WARNING)
        self.message_user(request, f"{done} request(s) {done_message}.")

    @admin.action(description="Verify the selected requests (identity checked)")
    def verify(self, request, queryset):
        self._each(request, queryset, privacy_request_verify, "verified")

    @admin.action(description="Run the selected requests now (rq job)")
    def run(self, request, queryset):
        self._each(request, queryset, privacy_request_enqueue, "queued")

    @admin.action(description="Download the export (one finished access request)")
    def download(self, request, queryset):
        objs = list(queryset[:2])
        if len(objs) != 1 or objs[0].kind != "access" or objs[0].status != RequestStatus.DONE:
            self.message_user(request, "Select exactly one finished access request.", messages.WARNING)
            return None
        archive = getattr(objs[0], "archive", None)
        if archive is None or archive.expires_at <= timezone.now():
            self.message_user(request, "The archive has expired; run the request again.", messages.WARNING)
            return None
        body = export_archive_downloaded(archive=archive, actor=f"admin:{request.user.get_username()}")
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="privacy-export-{str(objs[0].pk)[:8]}.json"'
        return response


class OptInForm(forms.Form):
    """A person asked the shop (phone, letter, support ticket) to be recognised again: an explicit,
    fresh opt-in recorded by staff. The identifier is used, never stored in the clear."""

    identifier_kind = forms.ChoiceField(choices=[(k, k) for k in (*IDENTIFIER_KINDS, "anonymous_id")])
    identifier_value = forms.CharField(max_length=255)
    purposes = forms.MultipleChoiceField(
        choices=[],
        widget=forms.CheckboxSelectMultiple,
        help_text="what the person agreed to; analytics is what lets their data in again",
    )
    note = forms.CharField(max_length=200, help_text="how the person asked (kept as evidence, no personal data)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["purposes"].choices = [(p.key, p.name) for p in Purpose.objects.filter(is_active=True)]

    def clean(self):
        data = super().clean()
        kind, value = data.get("identifier_kind"), data.get("identifier_value")
        if kind and value and not normalize_identifier(kind, value):
            self.add_error("identifier_value", f"Not a usable {data['identifier_kind']}.")
        return data


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Salted hashes of erased people's identifiers; an entry goes only when the person opts in again
    explicitly (banner, privacy center, or staff here with *Record an opt-in*)."""

    list_display = ["hash_prefix", "kind", "created_at"]
    list_filter = ["kind"]
    change_list_template = "admin/consent/suppression/change_list.html"

    @admin.display(description="hash")
    def hash_prefix(self, obj: Suppression) -> str:
        return f"{obj.hash[:16]}…"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view(self.opt_in_view)
        return [path("opt-in/", view, name="consent_suppression_opt_in"), *super().get_urls()]

    def opt_in_view(self, request):
        """Record consent for an identifier through the same service as the banner: a suppressed
        person's answer is refused unless it grants analytics, which lifts the suppression."""
        form = OptInForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            choices = dict.fromkeys(data["purposes"], True)
            try:
                profile_id, records = consent_record_for_identifiers(
                    identifiers=[(data["identifier_kind"], data["identifier_value"])],
                    choices=choices,
                    source="admin",
                    evidence={"admin": request.user.get_username()[:150], "note": data["note"]},
                )
            except ConsentError as exc:
                form.add_error(None, str(exc))
            else:
                if profile_id is None:
                    self.message_user(
                        request,
                        "Refused: this identifier belongs to an erased person; only an opt-in that includes "
                        "analytics lets their data in again.",
                        messages.ERROR,
                    )
                else:
                    self.message_user(request, f"Recorded {len(records)} answer(s).", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:consent_suppression_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Record an opt-in",
            "form": form,
        }
        return TemplateResponse(request, "admin/consent/suppression/opt_in.html", context)
