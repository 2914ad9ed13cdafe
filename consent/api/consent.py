"""Consent API: the storefront's banner (``POST /v1/consent``, write key) and a profile's consent
(``GET /api/v1/profiles/{id}/consent/``, secret key)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.authentication import ApiKeyAuthentication
from cdp.api.permissions import IsSecretKeyOrStaff, IsWriteKey, OriginAllowed
from profiles.api.tracking import ErrorResponse

from .. import selectors, services

# --- input -----------------------------------------------------------------------------------------


class ConsentInput(serializers.Serializer):
    userId = serializers.CharField(required=False, allow_blank=True, max_length=255)
    anonymousId = serializers.CharField(required=False, allow_blank=True, max_length=255)
    email = serializers.CharField(required=False, allow_blank=True, max_length=255)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    purposes = serializers.DictField(
        child=serializers.BooleanField(), help_text='purpose key → granted, e.g. {"analytics": true}'
    )
    policyVersion = serializers.CharField(required=False, max_length=32, help_text="default: the purpose's current")
    bannerId = serializers.CharField(required=False, max_length=100)
    userAgent = serializers.CharField(required=False, max_length=300)
    timestamp = serializers.DateTimeField(required=False)

    def validate_purposes(self, value: dict) -> dict:
        if not value:
            raise serializers.ValidationError("Give at least one purpose.")
        known = set(selectors.purposes_active().values_list("key", flat=True))
        unknown = sorted(set(value) - known)
        if unknown:
            raise serializers.ValidationError(
                f"Unknown purpose(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}."
            )
        return value

    def validate(self, attrs: dict) -> dict:
        if not any(attrs.get(k) for k in ("userId", "anonymousId", "email", "phone")):
            raise serializers.ValidationError({"userId": ["Give userId, anonymousId, email or phone."]})
        return attrs


# --- output ----------------------------------------------------------------------------------------


class ConsentRecordedOutput(serializers.Serializer):
    success = serializers.BooleanField()
    recorded = serializers.IntegerField(help_text="ledger records written")
    profile_id = serializers.UUIDField(allow_null=True, help_text="null when the identifiers are suppressed")


class ConsentStateOutput(serializers.Serializer):
    granted = serializers.BooleanField()
    source = serializers.CharField(help_text='where the answer came from; "default" when none holds')
    policy_version = serializers.CharField()
    recorded_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    default = serializers.BooleanField(help_text="no unexpired answer: the purpose's default applies")
    expired = serializers.BooleanField(help_text="there was an answer and it expired")


class ConsentHistoryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    purpose = serializers.CharField(source="purpose.key")
    granted = serializers.BooleanField()
    source = serializers.CharField()
    policy_version = serializers.CharField()
    evidence = serializers.DictField()
    recorded_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    profile_id = serializers.UUIDField(help_text="the profile it was recorded on (may be merged into this one)")


class ProfileConsentOutput(serializers.Serializer):
    profile_id = serializers.UUIDField()
    states = serializers.DictField(child=ConsentStateOutput(), help_text="purpose key → current state")
    history = ConsentHistoryOutput(many=True)


# --- views -----------------------------------------------------------------------------------------


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


class ConsentView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsWriteKey, OriginAllowed]

    @extend_schema(
        request=ConsentInput,
        responses={200: ConsentRecordedOutput, 400: ErrorResponse},
        examples=[
            OpenApiExample(
                "banner",
                value={
                    "anonymousId": "a-1",
                    "purposes": {"analytics": True, "personalisation": True, "marketing": False},
                    "policyVersion": "3",
                    "bannerId": "cookie-banner-2025",
                },
            )
        ],
        description="The storefront's consent banner: one ledger record per purpose for the visitor.",
    )
    def post(self, request):
        data = ConsentInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        identifiers = [
            (kind, v[key])
            for kind, key in (("user_id", "userId"), ("anonymous_id", "anonymousId"), ("email", "email"))
            if v.get(key)
        ]
        if v.get("phone"):
            identifiers.append(("phone", v["phone"]))
        evidence = services.consent_evidence(
            ip=client_ip(request),
            user_agent=v.get("userAgent") or request.META.get("HTTP_USER_AGENT"),
            banner_id=v.get("bannerId"),
        )
        evidence["sent_by"] = getattr(request.auth, "name", "")[:100]  # which storefront's write key
        try:
            profile_id, records = services.consent_record_for_identifiers(
                identifiers=identifiers,
                choices=v["purposes"],
                source="banner",
                policy_version=v.get("policyVersion"),
                evidence=evidence,
                at=v.get("timestamp"),
            )
        except services.ConsentError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from exc
        return Response({"success": True, "recorded": len(records), "profile_id": profile_id})


class ProfileConsentViewSet(viewsets.ViewSet):
    """A profile's consent: the current state per purpose and the whole ledger history (all merged profiles)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsSecretKeyOrStaff]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "profile_id",
                OpenApiTypes.UUID,
                OpenApiParameter.PATH,
                description="a profile id (a merged-away id answers for its survivor)",
            )
        ],
        responses={200: ProfileConsentOutput, 404: ErrorResponse},
        operation_id="profile_consent",
    )
    def list(self, request, profile_id: str):
        live = selectors.profile_live_id(profile_id=profile_id)
        if live is None:
            raise Http404("No such profile.")
        body = {
            "profile_id": live,
            "states": selectors.consent_states(profile_id=live),
            "history": list(selectors.consent_history(profile_id=live)),
        }
        return Response(ProfileConsentOutput(body).data)
