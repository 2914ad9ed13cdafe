"""Input and output serializers of the recommendations API (separate, as STYLE.md asks)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from recommendations.models import Product

MAX_UPSERT = 1000
MAX_K = 100


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class ProductInput(serializers.Serializer):
    """One product. Fields left out keep their stored value (a new product gets the defaults)."""

    sku = serializers.CharField(max_length=100, trim_whitespace=True)
    title = serializers.CharField(max_length=500, required=False, allow_blank=True)
    description = serializers.CharField(max_length=20_000, required=False, allow_blank=True)
    category = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text='Category path, levels joined by " > ".'
    )
    brand = serializers.CharField(max_length=200, required=False, allow_blank=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True)
    attributes = serializers.DictField(required=False, help_text="Free-form attributes (JSON object).")
    in_stock = serializers.BooleanField(required=False)

    def validate_sku(self, value: str) -> str:
        if "/" in value:
            raise serializers.ValidationError("A sku cannot contain '/'.")
        return value

    def validate_category(self, value: str) -> str:
        return " > ".join(part.strip() for part in value.split(">") if part.strip())


class ProductUpsertInput(serializers.Serializer):
    products = ProductInput(many=True, allow_empty=False, max_length=MAX_UPSERT)


class ProductOutput(serializers.ModelSerializer):
    attributes = serializers.DictField(read_only=True)

    class Meta:
        model = Product
        fields = [
            "sku",
            "title",
            "description",
            "category",
            "brand",
            "price",
            "attributes",
            "in_stock",
            "first_seen_source",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class UpsertOutput(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    skus = serializers.ListField(child=serializers.CharField())


class CsvListField(serializers.CharField):
    """A comma-separated query parameter, as a list."""

    def to_internal_value(self, data) -> list[str]:
        return _split(super().to_internal_value(data))


class RecommendationQueryInput(serializers.Serializer):
    profile_id = serializers.UUIDField(required=False, help_text="A profile id (a merged-away id works).")
    user_id = serializers.CharField(max_length=255, required=False, help_text="The shop's user id.")
    anonymous_id = serializers.CharField(max_length=255, required=False, help_text="An anonymous id.")
    k = serializers.IntegerField(
        min_value=1,
        max_value=MAX_K,
        required=False,
        help_text="How many items (1-100; default: the placement's, else RECS_DEFAULT_K).",
    )
    placement = serializers.CharField(
        max_length=100,
        required=False,
        default="home",
        help_text="Where the list is shown: home (default), product, cart, post_purchase, or a placement added in "
        "admin. An unknown placement is a 400 that lists the allowed ones.",
    )
    product = serializers.CharField(
        max_length=100, required=False, default="", help_text="placement=product: the sku of the product shown."
    )
    cart_items = CsvListField(
        max_length=2000, required=False, help_text="placement=cart: comma-separated skus in the cart (excluded)."
    )
    order_items = CsvListField(
        max_length=2000,
        required=False,
        help_text="placement=post_purchase: the skus just bought (default: the shopper's latest order).",
    )
    device = serializers.ChoiceField(
        choices=["desktop", "mobile", "tablet"], required=False, help_text="Default: the session's device."
    )
    local_hour = serializers.IntegerField(
        min_value=0, max_value=23, required=False, help_text="The shopper's local hour (default: from the session)."
    )
    session_items = CsvListField(
        max_length=2000, required=False, help_text="Comma-separated skus on screen now (the page's context)."
    )
    exclude_categories = CsvListField(max_length=2000, required=False, help_text="Comma-separated categories.")
    boost_categories = CsvListField(max_length=2000, required=False, help_text="Comma-separated categories.")
    max_per_category = serializers.IntegerField(
        min_value=1, max_value=MAX_K, required=False, help_text="Diversity cap (default RECS_MAX_PER_CATEGORY)."
    )

    def validate(self, attrs: dict) -> dict:
        named = [key for key in ("profile_id", "user_id", "anonymous_id") if attrs.get(key)]
        if len(named) > 1:
            raise serializers.ValidationError(
                {key: ["Give one of profile_id, user_id, anonymous_id."] for key in named}
            )
        attrs.setdefault("k", None)  # the placement's default k, else RECS_DEFAULT_K (serving decides)
        return attrs


class SimilarQueryInput(serializers.Serializer):
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, required=False, default=10)


class RecommendedItemOutput(serializers.Serializer):
    sku = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField(help_text="Top-level category.")
    score = serializers.FloatField(
        help_text="The model's own score for the item; its scale is in score_type: probability (the ranker's "
        "estimated probability, 0-1, that the shopper buys it next), similarity (0-1 scaled co-purchase/content "
        "similarity to the anchor items), popularity (distinct buyers)."
    )
    score_type = serializers.CharField(help_text="probability, similarity or popularity.")
    recommender = serializers.CharField(help_text="buy_again, als, item_item, content, session, popularity, …")
    reason = serializers.DictField(help_text='Machine-readable reason, e.g. {"type": "bought", "item_id": "X"}.')
    explanation = serializers.CharField(help_text='A sentence for the shopper, e.g. "Because you bought X".')


@extend_schema_serializer(many=False)  # the list action answers one object, not an array
class RecommendationOutput(serializers.Serializer):
    recommendation_id = serializers.UUIDField(
        help_text="Send it back as properties.recommendation_id on Recommendation Viewed / Product Clicked."
    )
    model_version = serializers.IntegerField(allow_null=True)
    personalised = serializers.BooleanField(
        help_text="False when the shopper is unknown or has not consented to personalisation."
    )
    profile_id = serializers.UUIDField(allow_null=True)
    placement = serializers.CharField()
    experiment = serializers.CharField(allow_null=True, help_text="The experiment that chose this list, if any.")
    variant = serializers.CharField(allow_null=True)
    propensity = serializers.FloatField(help_text="Probability with which this variant was chosen (1.0: fixed).")
    context = serializers.DictField()
    experiment = serializers.CharField(allow_null=True, help_text="The experiment that chose this answer, if any.")
    variant = serializers.CharField(allow_null=True, help_text="Its variant (or the bandit arm), if any.")
    items = RecommendedItemOutput(many=True)


# --- the common query without the serializer -----------------------------------------------------

_SIMPLE_TEXT = {"user_id": 255, "anonymous_id": 255, "placement": 100, "product": 100}
_SIMPLE_CSV = {"session_items": 2000, "cart_items": 2000, "order_items": 2000}
_K_DIGITS = frozenset("0123456789")


def _plain_text(value: str, max_length: int) -> bool:
    """What a DRF CharField accepts unchanged: not blank, no surrounding whitespace to trim, within
    its length, no NUL or surrogate characters."""
    return (
        0 < len(value) <= max_length
        and value == value.strip()
        and "\x00" not in value
        and not any("\ud800" <= ch <= "\udfff" for ch in value)
    )


def recommendation_query_fast(params) -> dict | None:
    """``RecommendationQueryInput(data=params).validated_data`` for the common query (one of user_id /
    anonymous_id, k as plain digits, placement, product, the comma-separated item lists), without
    building the serializer's fields for every request (about a third of a millisecond of CPU: DRF
    deep-copies 14 declared fields per instance). None for anything else (a profile_id, another
    parameter, a repeated one, a value the serializer would trim, reject or convert): the caller
    then validates with the serializer, which gives every error message as before. Tested equal to
    the serializer's result on the inputs it accepts."""
    out: dict = {}
    named = 0
    for key in params:
        values = params.getlist(key) if hasattr(params, "getlist") else [params[key]]
        if len(values) != 1 or not isinstance(values[0], str):
            return None
        value = values[0]
        if key in _SIMPLE_TEXT:
            if not _plain_text(value, _SIMPLE_TEXT[key]):
                return None
            out[key] = value
            named += key in ("user_id", "anonymous_id")
        elif key in _SIMPLE_CSV:
            if not _plain_text(value, _SIMPLE_CSV[key]):
                return None
            out[key] = _split(value)
        elif key == "k":
            if not (0 < len(value) <= 3 and _K_DIGITS.issuperset(value)) or not 1 <= int(value) <= MAX_K:
                return None
            out["k"] = int(value)
        else:
            return None
    if named > 1:
        return None  # the serializer says which fields conflict
    out.setdefault("placement", "home")
    out.setdefault("product", "")
    out.setdefault("k", None)
    return out
