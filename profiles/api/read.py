"""The profiles read API (secret key): a profile, lookup by identifier, a profile's events.

A merged-away profile id keeps working: it answers with the surviving profile, and says so
(``requested_id``, ``requested_id_merged``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from profiles import selectors
from profiles.api.tracking import ErrorResponse
from profiles.models import Event, EventType, Identifier, Profile

BUILTIN_LOOKUP_KINDS = ("email", "phone", "user_id", "anonymous_id")


def lookup_kinds() -> list[str]:
    """Identifier kinds a profile can be looked up by: the built-in ones and the configured extras."""
    return list(dict.fromkeys([*BUILTIN_LOOKUP_KINDS, *settings.CDP_EXTRA_IDENTIFIER_KINDS]))


# --- output ----------------------------------------------------------------------------------------


class IdentifierOutput(serializers.ModelSerializer):
    kind = serializers.CharField(
        read_only=True, help_text="email, phone, user_id, anonymous_id or a configured extra kind"
    )
    value = serializers.CharField(
        read_only=True, help_text="The normalised value (e.g. gmail dots and +tags removed, E.164 phone)."
    )

    class Meta:
        model = Identifier
        fields = ["kind", "value", "created_at"]


class ProfileOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(
        read_only=True, help_text="The live profile's id (the survivor when requested_id was merged away)."
    )
    requested_id = serializers.UUIDField(
        read_only=True,
        help_text=(
            "The profile id that was asked for (the id in the URL; for a lookup, the same as id). "
            "Equals id unless requested_id_merged is true."
        ),
    )
    requested_id_merged = serializers.BooleanField(
        read_only=True,
        help_text=(
            "True when requested_id was merged away into this profile: the answer is the surviving profile, "
            "whose id is id. Keep id, not requested_id, from now on."
        ),
    )
    traits = serializers.DictField(read_only=True, help_text="Latest value of each trait.")
    computed = serializers.DictField(
        read_only=True,
        help_text=(
            "Computed traits (RFM, order windows, category affinity, engagement, cart, habits); "
            "{} until first computed."
        ),
    )
    computed_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When computed was last refreshed."
    )
    identifiers = IdentifierOutput(
        many=True, read_only=True, help_text="Identifiers owned by this profile, ordered by kind."
    )
    intake_pending = serializers.IntegerField(
        read_only=True,
        help_text=(
            "Calls of this person accepted but not stitched yet (still in the intake log, usually for a "
            "second or two): events, traits and merges above do not show them yet. 0 when up to date."
        ),
    )
    intake_lag_seconds = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Seconds since the oldest of those calls was accepted; null when intake_pending is 0.",
    )

    class Meta:
        model = Profile
        fields = [
            "id",
            "requested_id",
            "requested_id_merged",
            "traits",
            "computed",
            "computed_at",
            "identifiers",
            "first_seen_at",
            "last_seen_at",
            "intake_pending",
            "intake_lag_seconds",
        ]
        read_only_fields = fields


class EventOutput(serializers.ModelSerializer):
    properties = serializers.DictField(read_only=True)
    traits = serializers.DictField(read_only=True)
    context = serializers.DictField(read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "message_id",
            "type",
            "name",
            "properties",
            "traits",
            "context",
            "occurred_at",
            "received_at",
            "original_timestamp",
            "sent_at",
            "device_type",
            "local_hour",
            "user_id",
            "anonymous_id",
        ]
        read_only_fields = fields


# --- input -----------------------------------------------------------------------------------------


class ProfileLookupInput(serializers.Serializer):
    """Exactly one identifier kind, given as a query parameter (its value is normalised like ingestion)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {kind: serializers.CharField(required=False, trim_whitespace=False) for kind in lookup_kinds()}

    def validate(self, attrs: dict) -> dict:
        kinds = lookup_kinds()
        given = [kind for kind in kinds if kind in attrs]
        if not given:
            raise serializers.ValidationError(f"Give one of {', '.join(kinds)}.")
        if len(given) > 1:
            raise serializers.ValidationError(f"Give only one of {', '.join(kinds)}; got {', '.join(given)}.")
        return {"kind": given[0], "value": attrs[given[0]]}


class ProfileEventsInput(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200, help_text="Only events with exactly this name.")
    type = serializers.ChoiceField(choices=EventType.choices, required=False, help_text="Only events of this type.")
    since = serializers.DateTimeField(
        required=False, help_text="Only events that occurred at or after this ISO-8601 date-time (inclusive)."
    )
    until = serializers.DateTimeField(
        required=False, help_text="Only events that occurred before this ISO-8601 date-time (exclusive)."
    )

    def validate(self, attrs: dict) -> dict:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs


class EventCursorPagination(CursorPagination):
    ordering = ("-occurred_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    page_size_query_description = "Events per page (default 50, at most 500)."
    max_page_size = 500


def _lookup_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            kind,
            OpenApiTypes.STR,
            description=(
                f"Find the profile with this {kind}, normalised as ingestion does (percent-encode '+' as %2B). "
                "Give exactly one lookup parameter."
            ),
        )
        for kind in lookup_kinds()
    ]


# --- views -----------------------------------------------------------------------------------------


class ProfileViewSet(viewsets.GenericViewSet):
    """Profiles: read one (a merged-away id answers with the survivor), find one by identifier, list its events."""

    serializer_class = ProfileOutput
    queryset = Profile.objects.none()  # typing of the {id} path parameter; reads go through selectors
    pagination_class = None

    def _live(self, pk: str, *, with_identifiers: bool = False) -> Profile:
        try:
            profile, merged = selectors.profile_get_live(profile_id=pk, with_identifiers=with_identifiers)
        except Profile.DoesNotExist as exc:
            raise Http404 from exc
        profile.requested_id = uuid.UUID(str(pk)) if merged else profile.pk
        profile.requested_id_merged = merged
        if with_identifiers:
            profile.intake_pending, profile.intake_lag_seconds = selectors.profile_intake_state(profile=profile)
        return profile

    @extend_schema(parameters=_lookup_parameters(), responses={200: ProfileOutput(many=True), 400: ErrorResponse})
    def list(self, request):
        """Find a profile by one identifier: a list with the profile, or an empty list."""
        data = ProfileLookupInput(data=request.query_params.dict())
        data.is_valid(raise_exception=True)
        profile = selectors.profile_find_by_identifier(**data.validated_data)
        if profile is None:
            return Response([])
        profile.requested_id = profile.pk
        profile.requested_id_merged = False
        profile.intake_pending, profile.intake_lag_seconds = selectors.profile_intake_state(profile=profile)
        return Response(ProfileOutput([profile], many=True).data)

    @extend_schema(responses={200: ProfileOutput, 404: ErrorResponse})
    def retrieve(self, request, pk: str | None = None):
        """A profile with its identifiers and computed traits; a merged-away id answers with the survivor."""
        return Response(ProfileOutput(self._live(pk, with_identifiers=True)).data)

    @extend_schema(
        parameters=[ProfileEventsInput],
        responses={200: EventOutput(many=True), 400: ErrorResponse, 404: ErrorResponse},
    )
    @action(detail=True, methods=["get"], pagination_class=EventCursorPagination)
    def events(self, request, pk: str | None = None):
        """The profile's events, newest first (the survivor's, for a merged-away id), cursor-paginated."""
        profile = self._live(pk)
        filters = ProfileEventsInput(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.profile_events(profile=profile, **filters.validated_data))
        return self.get_paginated_response(EventOutput(page, many=True).data)
