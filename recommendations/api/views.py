"""The recommendations API (secret key): catalog upsert and read, recommendations, similar items."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from recommendations import services, serving
from recommendations.models import Product

from .serializers import (
    ProductOutput,
    ProductUpsertInput,
    RecommendationOutput,
    RecommendationQueryInput,
    SimilarQueryInput,
    UpsertOutput,
    recommendation_query_fast,
)


def _plain(answer: serving.Answer) -> dict:
    """The answer as the response body. Its items are built fresh for this request as plain dicts and
    lists, so no copy is needed (``dataclasses.asdict`` deep-copied every item: ~0.5 ms a request)."""
    return {
        "recommendation_id": answer.recommendation_id,
        "model_version": answer.model_version,
        "personalised": answer.personalised,
        "profile_id": answer.profile_id,
        "placement": answer.placement,
        "experiment": answer.experiment,
        "variant": answer.variant,
        "propensity": answer.propensity,
        "items": answer.items,
        "context": answer.context,
    }


class ProductPagination(CursorPagination):
    ordering = "sku"
    page_size = 100


class ProductViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The product catalog: bulk upsert by sku, read one, list, and similar items."""

    queryset = Product.objects.all()
    serializer_class = ProductOutput
    lookup_field = "sku"
    lookup_value_regex = "[^/]+"
    pagination_class = ProductPagination

    @extend_schema(
        request=ProductUpsertInput,
        responses={200: UpsertOutput},
        description=(
            'Create or update up to 1000 products by sku: `{"products": [{"sku": …, "title": …}, …]}` (a bare '
            "list works too). All or nothing: any invalid item answers 400 with messages per field, e.g. "
            "`products.3.price`. Fields left out keep their stored value."
        ),
    )
    def upsert(self, request):
        body = request.data
        data = ProductUpsertInput(data={"products": body} if isinstance(body, list) else body)
        data.is_valid(raise_exception=True)
        result = services.product_upsert_many(items=data.validated_data["products"])
        return Response(UpsertOutput({"created": result.created, "updated": result.updated, "skus": result.skus}).data)

    @extend_schema(parameters=[SimilarQueryInput], responses={200: RecommendationOutput})
    def similar(self, request, sku: str):
        """Products similar to this one (in stock), from the active model."""
        query = SimilarQueryInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        answer = serving.similar(sku=sku, k=query.validated_data["k"])
        if answer is None:
            raise Http404
        return Response(_plain(answer))  # already plain data; the serializer documents it


def recommend_or_400(query: serving.Query) -> serving.Answer:
    """serving.recommend, with an unknown placement answered as a 400 that lists the allowed ones."""
    try:
        return serving.recommend(query)
    except serving.UnknownPlacement as exc:
        raise ValidationError(
            {"placement": [f"Unknown placement {exc.key!r}; allowed: {', '.join(exc.allowed)}."]}
        ) from None


class RecommendationViewSet(viewsets.GenericViewSet):
    """What this shopper should see: ranked, filtered, explained, logged."""

    serializer_class = RecommendationOutput
    pagination_class = None

    def get_queryset(self):  # pragma: no cover - not a model endpoint
        return Product.objects.none()

    @extend_schema(
        parameters=[RecommendationQueryInput],
        responses={200: RecommendationOutput},
        description=(
            "Recommendations for a profile (`profile_id`), a shop user (`user_id`) or a visitor (`anonymous_id`); "
            "none of them: a non-personalised list. Without personalisation consent the list is not personalised "
            "(`personalised: false`). Send `recommendation_id` back on the impression and click events."
        ),
    )
    def list(self, request):
        values = recommendation_query_fast(request.query_params)
        if values is None:  # anything but the common query: the serializer validates (and explains)
            query = RecommendationQueryInput(data=request.query_params)
            query.is_valid(raise_exception=True)
            values = query.validated_data
        try:
            answer = recommend_or_400(
                serving.Query(
                    profile_id=str(values["profile_id"]) if values.get("profile_id") else None,
                    user_id=values.get("user_id"),
                    anonymous_id=values.get("anonymous_id"),
                    k=values["k"],
                    placement=values.get("placement") or "home",
                    product=values.get("product", ""),
                    cart_items=values.get("cart_items", []),
                    order_items=values.get("order_items", []),
                    device=values.get("device", ""),
                    local_hour=values.get("local_hour"),
                    session_items=values.get("session_items", []),
                    exclude_categories=values.get("exclude_categories", []),
                    boost_categories=values.get("boost_categories", []),
                    max_per_category=values.get("max_per_category"),
                )
            )
        except serving.UnknownProfile:
            raise Http404 from None
        return Response(_plain(answer))  # already plain data; the serializer documents it


__all__ = ["ProductViewSet", "RecommendationViewSet"]
