"""Browser-safe assignment: ``GET /v1/experiments/assignment`` with a source's (publishable) write key,
for the visitor's anonymous id or a user id with a user token signed by the shop's backend, exactly
as ``GET /v1/recommendations`` (docs/decisions/0032-storefront-trust-model.md). The answer names the
experiment and variant only (no profile id, no strategy internals)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.authentication import ApiKeyAuthentication
from cdp.api.permissions import IsWriteKey, OriginAllowed
from cdp.api.throttling import ApiKeyRateThrottle
from profiles.api.tracking import ErrorResponse, WriteKeyInRequestAuthentication
from recommendations.api.storefront import StorefrontRecommendationThrottle, visitor_identity_or_403
from recommendations.experiments.selectors import shopper_strategy


class StorefrontAssignmentInput(serializers.Serializer):
    anonymous_id = serializers.CharField(max_length=255, required=False)
    user_id = serializers.CharField(max_length=255, required=False, help_text="Needs user_token.")
    user_token = serializers.CharField(max_length=200, required=False)
    placement = serializers.CharField(max_length=100)
    device = serializers.ChoiceField(choices=["desktop", "mobile", "tablet"], required=False, default="")


class StorefrontAssignmentOutput(serializers.Serializer):
    placement = serializers.CharField()
    experiment = serializers.CharField(allow_null=True)
    variant = serializers.CharField(allow_null=True)


class StorefrontAssignmentView(APIView):
    authentication_classes = [ApiKeyAuthentication, WriteKeyInRequestAuthentication]
    permission_classes = [IsWriteKey, OriginAllowed]
    throttle_classes = [ApiKeyRateThrottle, StorefrontRecommendationThrottle]

    @extend_schema(
        parameters=[StorefrontAssignmentInput, OpenApiParameter("writeKey", str, description="the write key")],
        responses={200: StorefrontAssignmentOutput, 400: ErrorResponse, 403: ErrorResponse},
        description="The experiment and variant of the page's visitor on a placement (records no exposure).",
    )
    def get(self, request):
        data = StorefrontAssignmentInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user_id, anonymous_id = visitor_identity_or_403(request, values)
        _, _, strategy = shopper_strategy(
            user_id=user_id, anonymous_id=anonymous_id, placement=values["placement"], device=values["device"]
        )
        return Response(
            {"placement": values["placement"], "experiment": strategy.experiment, "variant": strategy.variant}
        )
