"""Browser-safe recommendations: ``GET /v1/recommendations`` with a source's (publishable) write key.

A page asks for the visitor in front of it: the anonymous id its SDK sends, or a user id together
with a user token the shop's backend signed (``profiles.storefront.user_token_make``). The answer
holds product data only (no profile id, no traits, no scores), is throttled per source and client
address, and is CORS-enabled for the source's origins like the tracking endpoints
(docs/decisions/0032-storefront-trust-model.md). It calls the same serving service as the
secret-key ``/api/v1/recommendations/``.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from cdp.api.authentication import ApiKeyAuthentication
from cdp.api.permissions import IsWriteKey, OriginAllowed
from cdp.api.throttling import ApiKeyRateThrottle
from profiles.api.tracking import ErrorResponse, WriteKeyInRequestAuthentication
from profiles.storefront import UserTokenRefused, visitor_identity
from recommendations import serving
from recommendations.models import Product

from .serializers import CsvListField
from .views import recommend_or_400

MAX_BROWSER_K = 24


class StorefrontRecommendationInput(serializers.Serializer):
    anonymous_id = serializers.CharField(max_length=255, required=False, help_text="The SDK's anonymous id.")
    user_id = serializers.CharField(max_length=255, required=False, help_text="Needs user_token.")
    user_token = serializers.CharField(
        max_length=200, required=False, help_text="'<expires>.<hmac>' signed by the shop's backend for user_id."
    )
    placement = serializers.CharField(max_length=100, required=False, default="", help_text="home, product, cart")
    k = serializers.IntegerField(min_value=1, max_value=MAX_BROWSER_K, required=False, default=8)
    product = serializers.CharField(max_length=100, required=False, default="", help_text="placement=product: its sku")
    cart_items = CsvListField(max_length=2000, required=False, help_text="placement=cart: the cart's skus")
    order_items = CsvListField(max_length=2000, required=False, help_text="placement=post_purchase: the order's skus")
    session_items = CsvListField(max_length=2000, required=False, help_text="Comma-separated skus on screen now.")
    device = serializers.ChoiceField(choices=["desktop", "mobile", "tablet"], required=False)
    local_hour = serializers.IntegerField(min_value=0, max_value=23, required=False)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("user_token") and not attrs.get("user_id"):
            raise serializers.ValidationError({"user_id": ["A user token is for a user id: send user_id too."]})
        return attrs


class StorefrontItemOutput(serializers.Serializer):
    sku = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField()
    brand = serializers.CharField()
    price = serializers.CharField(allow_null=True, help_text="decimal as a string")
    in_stock = serializers.BooleanField()
    url = serializers.CharField(allow_blank=True, help_text="attributes.url of the product, if any")
    image = serializers.CharField(allow_blank=True, help_text="attributes.image of the product, if any")
    explanation = serializers.CharField()


class StorefrontRecommendationOutput(serializers.Serializer):
    recommendation_id = serializers.UUIDField(
        help_text="Send it back as properties.recommendation_id on Recommendation Viewed / Product Clicked."
    )
    placement = serializers.CharField()
    personalised = serializers.BooleanField()
    items = StorefrontItemOutput(many=True)


class StorefrontRecommendationThrottle(SimpleRateThrottle):
    """Per source and client address: a page asks once per placement view, not in a loop."""

    scope = "storefront_recommendations"

    def get_rate(self) -> str:
        return settings.RECS_BROWSER_THROTTLE

    def get_cache_key(self, request, view) -> str:
        source_id = getattr(request.auth, "pk", "none")
        return self.cache_format % {"scope": self.scope, "ident": f"{source_id}:{self.get_ident(request)}"}


def _product_data(items: list[dict]) -> list[dict]:
    skus = [item["sku"] for item in items]
    products = {p.sku: p for p in Product.objects.filter(sku__in=skus)}
    out = []
    for item in items:
        product = products.get(item["sku"])
        attributes = product.attributes if product and isinstance(product.attributes, dict) else {}
        out.append(
            {
                "sku": item["sku"],
                "title": item.get("title") or (product.title if product else ""),
                "category": item.get("category") or "",
                "brand": product.brand if product else "",
                "price": str(product.price) if product and product.price is not None else None,
                "in_stock": product.in_stock if product else True,
                "url": str(attributes.get("url") or ""),
                "image": str(attributes.get("image") or ""),
                "explanation": item.get("explanation") or "",
            }
        )
    return out


def visitor_identity_or_403(request, values: dict) -> tuple[str | None, str | None]:
    """profiles.storefront.visitor_identity for a shop page's request: a refused user token is a 403."""
    try:
        return visitor_identity(
            source=request.auth,
            user_id=values.get("user_id"),
            anonymous_id=values.get("anonymous_id"),
            token=values.get("user_token", ""),
        )
    except UserTokenRefused as exc:
        raise exceptions.PermissionDenied(str(exc), code="user_token_invalid") from None


class StorefrontRecommendationView(APIView):
    authentication_classes = [ApiKeyAuthentication, WriteKeyInRequestAuthentication]
    permission_classes = [IsWriteKey, OriginAllowed]
    throttle_classes = [ApiKeyRateThrottle, StorefrontRecommendationThrottle]

    @extend_schema(
        parameters=[
            StorefrontRecommendationInput,
            OpenApiParameter("writeKey", str, description="the source's write key (or Basic auth)"),
        ],
        responses={200: StorefrontRecommendationOutput, 400: ErrorResponse, 403: ErrorResponse},
        description=(
            "Recommendations a shop page may ask for itself, with the write key: for its visitor's anonymous id, "
            "or for a user id with a user token signed by the shop's backend (403 without a valid one). "
            "Product data only."
        ),
    )
    def get(self, request):
        data = StorefrontRecommendationInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user_id, anonymous_id = visitor_identity_or_403(request, values)
        answer = recommend_or_400(
            serving.Query(
                user_id=user_id,
                anonymous_id=anonymous_id,
                k=values["k"],
                placement=values.get("placement") or "home",
                product=values.get("product", ""),
                cart_items=values.get("cart_items", []),
                order_items=values.get("order_items", []),
                device=values.get("device", ""),
                local_hour=values.get("local_hour"),
                session_items=values.get("session_items", []),
            )
        )
        return Response(
            {
                "recommendation_id": answer.recommendation_id,
                "placement": answer.placement,
                "personalised": answer.personalised,
                "items": _product_data(answer.items),
            }
        )
