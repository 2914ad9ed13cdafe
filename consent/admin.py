"""Admin of consent: purposes (managed here), the ledger (read-only), the data-subject request queue
with due dates, overdue highlighted and the verify / run / download actions, the suppression list."""

from __future__ import annotations

import math
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from cdp.admin_readonly import ReadOnlyAdminMixin
from profiles.admin.panels import PanelContent, register_profile_panel
from profiles.normalize import normalize_identifier

from .models import (
    ConsentRecord,
    DataSubjectRequest,
    ExportArchive,
    Purpose,
    RequestAuditEntry,
    RequestStatus,
    Suppression,
)
from .requests import (
    IDENTIFIER_KINDS,
    export_archive_downloaded,
    privacy_request_create,
    privacy_request_enqueue,
    privacy_request_verify,
)
from .selectors import consent_history, consent_states, profile_group_ids, profile_live_id
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
class ConsentRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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


class AuditInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RequestAuditEntry
    verbose_name = "audit entry"
    verbose_name_plural = "audit trail"  # not Django's "request audit entrys"
    fields = ["at", "actor", "action", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False


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


FINISHED = (RequestStatus.DONE, RequestStatus.REJECTED)


def export_download_bytes(archive: ExportArchive) -> int:
    """The size of the JSON the Download button returns: the gzip trailer's ISIZE (exact below 4 GiB)."""
    content = bytes(archive.content)
    return int.from_bytes(content[-4:], "little") if len(content) >= 18 else 0


def human_bytes(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


class DeadlineFilter(admin.SimpleListFilter):
    title = "deadline"
    parameter_name = "deadline"

    def lookups(self, request, model_admin):
        return [
            ("overdue", "Overdue"),
            ("week", "Due within 7 days"),
            ("open", "Open (not finished)"),
            ("finished", "Finished"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        value = self.value()
        if value == "overdue":
            return queryset.exclude(status__in=FINISHED).filter(due_at__lt=now)
        if value == "week":
            return queryset.exclude(status__in=FINISHED).filter(due_at__gte=now, due_at__lt=now + timedelta(days=7))
        if value == "open":
            return queryset.exclude(status__in=FINISHED)
        if value == "finished":
            return queryset.filter(status__in=FINISHED)
        return queryset


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(admin.ModelAdmin):
    """The DPO's queue: oldest deadline first, days left and overdue highlighted and filterable; the
    request page has Verify / Run / Download buttons and the audit trail, and is read-only."""

    list_display = [
        "short_id",
        "kind",
        "status",
        "subject_hint",
        "received_at",
        "due",
        "days_left",
        "progress_display",
    ]  # channel and verification time are filters and on the request page: the list fits 1366 px
    list_filter = [DeadlineFilter, "status", "kind", "channel"]
    ordering = ["due_at"]
    inlines = [AuditInline]
    change_form_template = "admin/consent/datasubjectrequest/change_form.html"
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
            "days_left",
            "progress_display",
            "export_size",
            "result_display",
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

    @admin.display(description="days left", ordering="due_at")
    def days_left(self, obj: DataSubjectRequest):
        if obj.status in FINISHED:
            when = timezone.localtime(obj.finished_at).date() if obj.finished_at else ""
            return format_html('<span class="cdp-pill finished">finished {}</span>', when)
        days = (obj.due_at - timezone.now()).total_seconds() / 86400
        if days < 0:
            late = max(1, math.ceil(-days))
            return format_html(
                '<span class="cdp-pill overdue">overdue by {} day{}</span>', late, "s" if late > 1 else ""
            )
        left = math.floor(days)
        return format_html(
            '<span class="cdp-pill{}">{} day{} left</span>', " soon" if left < 7 else "", left, "" if left == 1 else "s"
        )

    @admin.display(description="progress")
    def progress_display(self, obj: DataSubjectRequest):
        if obj.status == RequestStatus.DONE:
            return format_html('<span class="cdp-pill finished">finished</span> {}', obj.progress_message or "")
        percent = round(obj.progress * 100)
        running = obj.status in (RequestStatus.QUEUED, RequestStatus.RUNNING)
        return format_html(
            '<progress max="100" value="{}"{}></progress> {}% {}',
            percent,
            mark_safe(" data-cdp-running") if running else "",
            percent,
            obj.progress_message or "",
        )

    @admin.display(description="result")
    def result_display(self, obj: DataSubjectRequest) -> str:
        """The job's counts in words; an export's ``bytes`` are the stored (compressed) archive, so they
        are named as such beside the size of what the Download button returns."""
        result = dict(obj.result or {})
        if not result:
            return "—"
        parts = []
        if "profiles" in result:
            parts.append(f"{result.pop('profiles')} profile(s)")
        if "bytes" in result:
            parts.append(f"archive stored compressed: {human_bytes(result.pop('bytes'))}")
        parts += [f"{key}: {value}" for key, value in result.items()]
        return "; ".join(parts)

    @admin.display(description="export")
    def export_size(self, obj: DataSubjectRequest):
        archive = ExportArchive.objects.filter(request=obj).only("content", "expires_at", "downloads").first()
        if archive is None:
            return "—"
        state = (
            "expired"
            if archive.expires_at <= timezone.now()
            else f"until {timezone.localtime(archive.expires_at):%Y-%m-%d %H:%M}"
        )
        size = human_bytes(export_download_bytes(archive))
        return f"{size} of JSON (the download), {state}, downloaded {archive.downloads} time(s)"

    # --- the request page: read-only, with buttons -------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<uuid:pk>/verify/", view(self.verify_view), name="consent_datasubjectrequest_verify"),
            path("<uuid:pk>/run/", view(self.run_view), name="consent_datasubjectrequest_run"),
            path("<uuid:pk>/download/", view(self.download_view), name="consent_datasubjectrequest_download"),
            *super().get_urls(),
        ]

    def has_act_permission(self, request) -> bool:
        return request.user.has_perm("consent.change_datasubjectrequest")

    def buttons(self, request, obj: DataSubjectRequest) -> list[dict]:
        allowed = self.has_act_permission(request)
        archive = ExportArchive.objects.filter(request=obj, expires_at__gt=timezone.now()).only("content").first()
        return [
            {
                "name": "verify",
                "label": "Verify identity",
                "enabled": allowed and obj.status == RequestStatus.RECEIVED,
                "why": ""
                if obj.status == RequestStatus.RECEIVED
                else "verified already"
                if obj.verified_at
                else f"the request is {obj.status}",
            },
            {
                "name": "run",
                "label": "Run now" if obj.status != RequestStatus.FAILED else "Run again",
                "enabled": allowed and obj.status in (RequestStatus.VERIFIED, RequestStatus.FAILED),
                "why": "verify it first" if obj.status == RequestStatus.RECEIVED else "",
            },
            {
                "name": "download",
                "label": f"Download export ({human_bytes(export_download_bytes(archive))})"
                if archive
                else "Download export",
                "enabled": allowed and obj.kind == "access" and archive is not None,
                "why": "only access requests have an export"
                if obj.kind != "access"
                else ""
                if archive
                else "no export yet (run it) or it expired",
            },
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        if object_id is not None:
            obj = self.get_object(request, object_id)
            if obj is not None:
                extra_context.update(
                    {
                        "show_save": False,
                        "show_save_and_continue": False,
                        "show_save_and_add_another": False,
                        "show_delete": False,
                        "dsr_buttons": self.buttons(request, obj),
                        "dsr_finished": obj.status in FINISHED,
                        "dsr_running": obj.status in (RequestStatus.QUEUED, RequestStatus.RUNNING),
                        "dsr_days_left": self.days_left(obj),
                        "dsr_status": obj.get_status_display() if obj.status != RequestStatus.DONE else "finished",
                    }
                )
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _act(self, request, pk, service, done: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_act_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, str(pk))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(pk))
        try:
            service(request=obj, actor=f"admin:{request.user.get_username()}")
        except ConsentError as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:consent_datasubjectrequest_change", args=[obj.pk]))

    def verify_view(self, request, pk):
        return self._act(request, pk, privacy_request_verify, "Identity verified. The request can be run now.")

    def run_view(self, request, pk):
        return self._act(
            request,
            pk,
            privacy_request_enqueue,
            "Queued: the job runs in the background; this page follows its progress.",
        )

    def download_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_act_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, str(pk))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(pk))
        response = self._download(request, obj)
        return response or HttpResponseRedirect(reverse("admin:consent_datasubjectrequest_change", args=[obj.pk]))

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
        if len(objs) != 1:
            self.message_user(request, "Select exactly one finished access request.", messages.WARNING)
            return None
        return self._download(request, objs[0])

    def _download(self, request, obj: DataSubjectRequest):
        objs = [obj]
        if objs[0].kind != "access" or objs[0].status != RequestStatus.DONE:
            self.message_user(request, "Only a finished access request has an export.", messages.WARNING)
            return None
        archive = ExportArchive.objects.filter(request=objs[0]).first()
        if archive is None or archive.expires_at <= timezone.now():
            self.message_user(request, "The archive has expired; run the request again.", messages.WARNING)
            return None
        body = export_archive_downloaded(archive=archive, actor=f"admin:{request.user.get_username()}")
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="privacy-export-{str(objs[0].pk)[:8]}.json"'
        response["Content-Length"] = str(len(body))
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


# --- the profile page's consent and privacy panels ------------------------------------------------


def _when(value) -> str:
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M}" if value else "—"


def consent_panel(*, request, profile) -> PanelContent:
    rows = [
        [
            key,
            format_html(
                '<b class="{}">{}</b>', "cdp-ok" if s["granted"] else "cdp-bad", "granted" if s["granted"] else "denied"
            ),
            "default" if s["default"] else s["source"],
            s["policy_version"],
            _when(s["recorded_at"]),
            _when(s["expires_at"]),
        ]
        for key, s in consent_states(profile_id=profile.pk).items()
    ]
    return PanelContent(
        headers=["purpose", "now", "from", "policy version", "recorded", "expires"],
        rows=rows,
        empty="No active purposes.",
    )


def consent_ledger_panel(*, request, profile, limit: int = 20) -> PanelContent:
    records = list(consent_history(profile_id=profile.pk)[:limit])
    url = reverse("admin:consent_consentrecord_changelist") + f"?q={profile.pk}"
    return PanelContent(
        headers=["recorded", "purpose", "granted", "source", "policy version", "expires"],
        rows=[
            [
                _when(r.recorded_at),
                r.purpose.key,
                "yes" if r.granted else "no",
                r.source,
                r.policy_version,
                _when(r.expires_at),
            ]
            for r in records
        ],
        empty="No consent recorded: the purposes' defaults apply.",
        note=f"The {limit} newest records of this person (all merged profiles), newest first." if records else "",
        links=[("The whole ledger of this profile", url)],
    )


def privacy_requests_panel(*, request, profile) -> PanelContent:
    ids = profile_group_ids(profile_id=profile.pk) or [str(profile.pk)]
    requests = DataSubjectRequest.objects.filter(profile_id__in=ids).order_by("-received_at")[:20]
    return PanelContent(
        headers=["request", "kind", "status", "received", "due"],
        rows=[
            [
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:consent_datasubjectrequest_change", args=[r.pk]),
                    str(r.pk)[:8],
                ),
                r.kind,
                r.get_status_display(),
                _when(r.received_at),
                _when(r.due_at),
            ]
            for r in requests
        ],
        empty="No access or erasure requests.",
    )


register_profile_panel(key="consent", title="Consent now", order=30, render=consent_panel)
register_profile_panel(key="consent-ledger", title="Consent ledger", order=31, render=consent_ledger_panel)
register_profile_panel(key="privacy-requests", title="Privacy requests", order=60, render=privacy_requests_panel)
