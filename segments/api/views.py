"""The segments API (secret key): rule segments, preview, members (JSON and CSV), a profile's segments.

Definitions are validated by the same function as in admin (segments.rules.validate), and its
field paths (``definition.all[1].value``) come back in the error shape's ``fields``.
"""

from __future__ import annotations

import csv

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from profiles.api.tracking import ErrorResponse
from profiles.models import Profile
from profiles.selectors import profile_display_name
from segments import selectors, services
from segments.models import Segment, SegmentKind, SegmentMembership, SegmentStatus

DEFINITION_HELP = (
    "Condition tree (docs/segments.md): groups {'all': [...]}, {'any': [...]}, {'not': {...}}; leaves on "
    "traits, computed traits, events, consent, context and other segments."
)
EXPORT_PURPOSES = ("marketing", "personalisation", "analytics", "third_party_sharing")


def _invalid(exc: services.SegmentInvalid) -> serializers.ValidationError:
    return serializers.ValidationError(exc.errors)


# --- output ---------------------------------------------------------------------------------------


class SegmentOutput(serializers.ModelSerializer):
    definition = serializers.JSONField(
        source="typed_definition", read_only=True, allow_null=True, help_text=DEFINITION_HELP
    )
    cluster_profile = serializers.DictField(read_only=True, help_text="Cluster segments: the centre, readable.")
    kind = serializers.CharField(read_only=True, help_text="rule (defined by conditions) or cluster (found by a run)")
    status = serializers.CharField(read_only=True, help_text="active, proposed (cluster, awaiting review) or dismissed")

    class Meta:
        model = Segment
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "status",
            "definition",
            "cluster_label",
            "cluster_profile",
            "size",
            "last_refreshed_at",
            "created_at",
            "updated_at",
            "created_by",
        ]
        read_only_fields = fields


class MemberOutput(serializers.Serializer):
    profile_id = serializers.UUIDField(read_only=True)
    email = serializers.CharField(read_only=True, allow_null=True)
    name = serializers.CharField(read_only=True, allow_null=True)
    entered_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, instance: SegmentMembership) -> dict:
        traits = instance.profile.traits or {}
        return {
            "profile_id": str(instance.profile_id),
            "email": traits.get("email"),
            "name": profile_display_name(traits) or None,
            "entered_at": serializers.DateTimeField().to_representation(instance.entered_at),
        }


class PreviewOutput(serializers.Serializer):
    size = serializers.IntegerField(help_text="How many live profiles match now.")
    sample = inline_serializer(
        "SegmentPreviewMember",
        {
            "id": serializers.UUIDField(),
            "email": serializers.CharField(allow_null=True),
            "name": serializers.CharField(allow_null=True),
            "last_seen_at": serializers.DateTimeField(),
        },
        many=True,
    )
    at = serializers.DateTimeField(help_text="The moment the definition was evaluated at.")


class ProfileSegmentOutput(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    entered_at = serializers.DateTimeField(allow_null=True)


# --- input ----------------------------------------------------------------------------------------


class SegmentInput(serializers.Serializer):
    slug = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    definition = serializers.JSONField(help_text=DEFINITION_HELP)
    status = serializers.ChoiceField(
        choices=["active", "dismissed"], required=False, help_text="dismissed: kept, but not refreshed nor served"
    )


class PreviewInput(serializers.Serializer):
    definition = serializers.JSONField(help_text=DEFINITION_HELP)
    sample = serializers.IntegerField(required=False, default=20, min_value=0, max_value=100)


class ExportInput(serializers.Serializer):
    purpose = serializers.ChoiceField(
        choices=EXPORT_PURPOSES,
        help_text="Required: what the list is for; only members who granted this purpose are in it "
        "(e.g. marketing for a campaign tool). There is no export without a purpose.",
    )


class MemberCursorPagination(CursorPagination):
    ordering = ("-entered_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    page_size_query_description = "Members per page (default 100, at most 1000)."
    max_page_size = 1000


class _Echo:
    def write(self, value: str) -> str:
        return value


# --- views ----------------------------------------------------------------------------------------


class SegmentViewSet(viewsets.GenericViewSet):
    """Segments: rule segments defined here, cluster segments accepted from clustering runs."""

    serializer_class = SegmentOutput
    queryset = Segment.objects.all()
    lookup_field = "slug"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    pagination_class = None

    def get_queryset(self):
        return Segment.objects.order_by("name", "pk")

    @extend_schema(
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, enum=list(SegmentKind.values)),
            OpenApiParameter("status", OpenApiTypes.STR, enum=list(SegmentStatus.values)),
        ],
        responses={200: SegmentOutput(many=True)},
    )
    def list(self, request):
        """Every segment, by name (filter with ?kind=rule|cluster and ?status=active|proposed|dismissed)."""
        segments = self.get_queryset()
        for key, choices in (("kind", SegmentKind.values), ("status", SegmentStatus.values)):
            value = request.query_params.get(key)
            if value is not None:
                if value not in choices:
                    raise serializers.ValidationError({key: [f"Choose one of: {', '.join(choices)}."]})
                segments = segments.filter(**{key: value})
        return Response(SegmentOutput(segments, many=True).data)

    @extend_schema(request=SegmentInput, responses={201: SegmentOutput, 400: ErrorResponse})
    def create(self, request):
        """Create a rule segment; its members are computed right after (a few seconds at most)."""
        data = SegmentInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields.pop("status", None)
        try:
            segment = services.segment_create(**fields, created_by=_actor(request))
        except services.SegmentInvalid as exc:
            raise _invalid(exc) from exc
        return Response(SegmentOutput(segment).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: SegmentOutput, 404: ErrorResponse})
    def retrieve(self, request, slug: str | None = None):
        """One segment with its definition and current size."""
        return Response(SegmentOutput(self.get_object()).data)

    def _update(self, request, *, partial: bool):
        segment = self.get_object()
        data = SegmentInput(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if segment.kind != SegmentKind.RULE and "definition" in fields:
            raise serializers.ValidationError({"definition": ["A cluster segment has no definition."]})
        try:
            segment = services.segment_update(segment=segment, **fields)
        except services.SegmentInvalid as exc:
            raise _invalid(exc) from exc
        return Response(SegmentOutput(segment).data)

    @extend_schema(request=SegmentInput, responses={200: SegmentOutput, 400: ErrorResponse, 404: ErrorResponse})
    def update(self, request, slug: str | None = None):
        """Replace a rule segment's slug, name, description and definition (validated as on creation)."""
        return self._update(request, partial=False)

    @extend_schema(request=SegmentInput, responses={200: SegmentOutput, 400: ErrorResponse, 404: ErrorResponse})
    def partial_update(self, request, slug: str | None = None):
        """Change some fields of a segment (a new definition refreshes its members)."""
        return self._update(request, partial=True)

    @extend_schema(responses={204: None, 404: ErrorResponse})
    def destroy(self, request, slug: str | None = None):
        """Delete a segment with its membership history."""
        services.segment_delete(segment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=PreviewInput, responses={200: PreviewOutput, 400: ErrorResponse})
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """Size and a sample of members of a definition, without saving it."""
        data = PreviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = services.segment_preview(
                definition=data.validated_data["definition"], sample=data.validated_data["sample"]
            )
        except services.SegmentInvalid as exc:
            raise _invalid(exc) from exc
        return Response(PreviewOutput(result).data)

    @extend_schema(responses={200: MemberOutput(many=True), 404: ErrorResponse})
    @action(detail=True, methods=["get"], pagination_class=MemberCursorPagination)
    def members(self, request, slug: str | None = None):
        """Current members, newest entries first, cursor-paginated."""
        segment = self.get_object()
        page = self.paginate_queryset(selectors.segment_members(segment=segment).select_related("profile"))
        return self.get_paginated_response(MemberOutput(page, many=True).data)

    @extend_schema(
        parameters=[ExportInput],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="profile_id,email,name,entered_at"),
            400: ErrorResponse,
            404: ErrorResponse,
        },
    )
    @action(detail=True, methods=["get"], url_path="members/export")
    def export(self, request, slug: str | None = None):
        """Current members who granted ``?purpose=`` (required), as CSV."""
        segment = self.get_object()
        data = ExportInput(data=request.query_params.dict())
        data.is_valid(raise_exception=True)
        purpose = data.validated_data["purpose"]
        rows = selectors.segment_members_for_export(segment=segment, purpose=purpose)
        writer = csv.writer(_Echo())

        def lines():
            yield writer.writerow(["profile_id", "email", "name", "entered_at"])
            for pid, traits, entered in rows:
                traits = traits or {}
                yield writer.writerow(
                    [pid, traits.get("email") or "", profile_display_name(traits), entered.isoformat()]
                )

        response = StreamingHttpResponse(lines(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="segment-{segment.slug}-{purpose}.csv"'
        return response


class ProfileSegmentsView(APIView):
    """The active segments a profile is in (a merged-away id answers for the survivor)."""

    @extend_schema(responses={200: ProfileSegmentOutput(many=True), 404: ErrorResponse})
    def get(self, request, profile_id: str):
        """Active segments of the profile with when it entered each, by segment name."""
        if selectors._live_profile_id(profile_id) is None:
            raise Http404
        rows = selectors.profile_segments_with_entry(profile_id=profile_id)
        return Response(ProfileSegmentOutput(rows, many=True).data)


def _actor(request) -> str:
    auth = request.auth
    if isinstance(auth, Profile):  # pragma: no cover - never a profile
        return ""
    if auth is not None and hasattr(auth, "name"):
        return f"api:{auth.name}"
    user = getattr(request, "user", None)
    return getattr(user, "username", "") or "api"
