"""The privacy center: customers verify their e-mail with a one-time link, then see and change their
consent per purpose, ask for an export or erasure, and download the export. Server-rendered, CSRF
protected, the same answer for known and unknown addresses."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from profiles.selectors import profile_find_by_identifier

from ..center import center_link_send, center_token_use, center_token_valid
from ..models import DataSubjectRequest, RequestChannel, RequestKind
from ..requests import export_download_path, privacy_request_create
from ..selectors import consent_states, purposes_active
from ..services import ConsentError, consent_evidence, consent_record_for_identifiers

SESSION_EMAIL = "privacy_center_email"
SESSION_REQUESTS = "privacy_center_requests"
SESSION_SECONDS = 30 * 60


class EmailForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Your e-mail address")


class RequestForm(forms.Form):
    kind = forms.ChoiceField(choices=RequestKind.choices)
    confirm = forms.BooleanField(required=False)

    def clean(self):
        data = super().clean()
        if data.get("kind") == RequestKind.ERASURE and not data.get("confirm"):
            raise forms.ValidationError("Tick the box to confirm that everything about you should be erased.")
        return data


def _render(request, template: str, status: int = 200, **context):
    base = {
        "shop_name": settings.PRIVACY_CENTER_SHOP_NAME,
        "primary": settings.PRIVACY_CENTER_PRIMARY_COLOR,
        "accent": settings.PRIVACY_CENTER_ACCENT_COLOR,
    }
    response = render(request, f"consent/center/{template}", {**base, **context}, status=status)
    # the link's token never leaks to other sites ("no-referrer" would make Chromium send Origin: null,
    # which Django's CSRF check refuses)
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex"
    return response


def _client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


@never_cache
@require_http_methods(["GET", "POST"])
def center_start(request):
    if request.method == "GET":
        return _render(request, "start.html", form=EmailForm())
    form = EmailForm(request.POST)
    if not form.is_valid():
        return _render(request, "start.html", status=400, form=form)
    email = form.cleaned_data["email"]
    center_link_send(
        email=email,
        client_ip=_client_ip(request),
        build_url=lambda token: request.build_absolute_uri(reverse("privacy-center-verify", args=[token])),
    )
    # the same page whether the address is known, unknown or rate-limited
    return _render(request, "sent.html", email=email, minutes=settings.PRIVACY_CENTER_LINK_MINUTES)


@never_cache
@require_http_methods(["GET", "POST"])
def center_verify(request, token: str):
    # GET only shows a button: mail scanners that open links must not use them up
    if request.method == "GET":
        if center_token_valid(token=token) is None:
            return _render(request, "invalid.html", status=410)
        return _render(request, "verify.html")
    request.session.cycle_key()  # a fresh session id for a signed-in visitor
    email = center_token_use(token=token, session_key=request.session.session_key or "")
    if email is None:
        return _render(request, "invalid.html", status=410)
    request.session[SESSION_EMAIL] = email
    request.session[SESSION_REQUESTS] = []
    request.session.set_expiry(SESSION_SECONDS)
    return redirect("privacy-center-me")


def _email(request) -> str | None:
    return request.session.get(SESSION_EMAIL)


def _requests_of(request, profile) -> list[dict]:
    ids = list(request.session.get(SESSION_REQUESTS, []))
    qs = DataSubjectRequest.objects.filter(pk__in=ids)
    if profile is not None:
        qs = qs | DataSubjectRequest.objects.filter(profile_id=profile.pk)
    rows = []
    for r in qs.order_by("-received_at")[:20]:
        done_access = r.kind == RequestKind.ACCESS and r.status == "done"
        rows.append({"obj": r, "download": export_download_path(request=r) if done_access else None})
    return rows


@never_cache
@require_http_methods(["GET", "POST"])
def center_me(request):
    email = _email(request)
    if not email:
        return redirect("privacy-center")
    profile = profile_find_by_identifier(kind="email", value=email)
    purposes = list(purposes_active())
    if request.method == "POST":
        choices = {p.key: request.POST.get(f"purpose_{p.key}") == "on" for p in purposes}
        try:
            consent_record_for_identifiers(
                identifiers=[("email", email)],
                choices=choices,
                source="privacy_center",
                evidence=consent_evidence(
                    ip=_client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT"), banner_id="privacy-center"
                ),
            )
        except ConsentError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Your choices are saved.")
        return redirect("privacy-center-me")
    states = consent_states(profile_id=profile.pk) if profile else consent_states(profile_id=None)
    rows = [{"purpose": p, "state": states.get(p.key, {"granted": p.default_granted})} for p in purposes]
    return _render(
        request,
        "me.html",
        email=email,
        rows=rows,
        requests=_requests_of(request, profile),
        request_form=RequestForm(),
    )


@never_cache
@require_POST
def center_request(request):
    email = _email(request)
    if not email:
        return redirect("privacy-center")
    form = RequestForm(request.POST)
    if not form.is_valid():
        for error in form.non_field_errors() or ["Choose what you are asking for."]:
            messages.error(request, error)
        return redirect("privacy-center-me")
    kind = form.cleaned_data["kind"]
    obj = privacy_request_create(
        kind=kind,
        channel=RequestChannel.PRIVACY_CENTER,
        requested_by="privacy center (e-mail verified)",
        identifier_kind="email",
        identifier_value=email,
        verified=True,
    )
    if kind == RequestKind.ERASURE:
        request.session.flush()  # nothing of the person stays in the session store either
        return _render(request, "erasure.html", reference=str(obj.pk)[:8], due_at=obj.due_at)
    request.session[SESSION_REQUESTS] = [*request.session.get(SESSION_REQUESTS, []), str(obj.pk)]
    messages.success(request, "We are preparing your export. Reload this page in a minute to download it.")
    return redirect("privacy-center-me")


@require_POST
def center_logout(request):
    request.session.flush()
    return redirect("privacy-center")
