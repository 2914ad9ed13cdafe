"""Data-subject requests over the API (secret key): ``POST/GET /api/v1/privacy-requests/``.

A request made with a secret key comes from the shop's backend, which has verified the person: it
is verified and queued at once.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from cdp.api.authentication import ApiKeyAuthentication
from cdp.api.permissions import IsSecretKeyOrStaff
from profiles.api.tracking import ErrorResponse

from ..models import DataSubjectRequest, RequestChannel, RequestKind
from ..requests import export_download_path, privacy_request_create
from ..services import ConsentError


class PrivacyRequestInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=RequestKind.choices)
    profile_id = serializers.UUIDField(required=False)
    email = serializers.CharField(required=False, max_length=255)
    phone = serializers.CharField(required=False, max_length=64)
    user_id = serializers.CharField(required=False, max_length=255)

    def validate(self, attrs: dict) -> dict:
        given = [k for k in ("profile_id", "email", "phone", "user_id") if attrs.get(k)]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"profile_id": ["Give exactly one of profile_id, email, phone or user_id."]}
            )
        return attrs


class PrivacyRequestOutput(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField(
        help_text="access requests, when done: a signed link to the JSON archive, valid for hours"
    )

    class Meta:
        model = DataSubjectRequest
        fields = [
            "id",
            "kind",
            "status",
            "channel",
            "subject_hint",
            "received_at",
            "due_at",
            "verified_at",
            "started_at",
            "finished_at",
            "progress",
            "progress_message",
            "result",
            "error",
            "download_url",
        ]

    def get_download_url(self, obj: DataSubjectRequest) -> str | None:
        if obj.kind != RequestKind.ACCESS or obj.status != "done":
            return None
        path = export_download_path(request=obj)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if (path and request) else path


class RequestCursorPagination(CursorPagination):
    ordering = ("-received_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class PrivacyRequestViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Access and erasure requests: create one, follow its status, get the archive's link."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsSecretKeyOrStaff]
    serializer_class = PrivacyRequestOutput
    pagination_class = RequestCursorPagination
    queryset = DataSubjectRequest.objects.all()

    @extend_schema(
        request=PrivacyRequestInput,
        responses={201: PrivacyRequestOutput, 400: ErrorResponse},
        examples=[OpenApiExample("erasure by e-mail", value={"kind": "erasure", "email": "ann@example.com"})],
    )
    def create(self, request):
        data = PrivacyRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        kind_of_id = next(k for k in ("email", "phone", "user_id") if v.get(k)) if not v.get("profile_id") else None
        principal = getattr(request.user, "name", None) or str(request.user)
        try:
            obj = privacy_request_create(
                kind=v["kind"],
                channel=RequestChannel.API,
                requested_by=f"api:{principal}"[:150],
                profile_id=str(v["profile_id"]) if v.get("profile_id") else None,
                identifier_kind=kind_of_id,
                identifier_value=v.get(kind_of_id) if kind_of_id else None,
                verified=True,
            )
        except ConsentError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from exc
        return Response(PrivacyRequestOutput(obj, context={"request": request}).data, status=201)
