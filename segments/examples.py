"""The issue's example segments, written in the definition language (docs/segments.md has them with
explanations). The admin editor offers them as starting points and the benchmark refreshes them."""

from __future__ import annotations

HOT_LEADS = {
    "all": [
        {
            "event": "Product Viewed",
            "where": [{"property": "category", "op": "=", "value": "outdoor"}],
            "within_last": {"hours": 24},
            "count": {"op": ">=", "value": 3},
        },
        {
            "event": "Order Completed",
            "where": [{"property": "products[].category", "op": "=", "value": "outdoor"}],
            "within_last": {"hours": 24},
            "did_not": True,
        },
    ]
}

ENGAGED_CART_ABANDONERS = {
    "all": [
        {"event": "Product Added", "within_last": {"days": 7}},
        {"event": "Order Completed", "within_last": {"days": 7}, "did_not": True},
        {"computed": "sessions", "op": "top_percent", "value": 25},
    ]
}

MOBILE_EVENING_LUXURY = {
    "event": "Product Viewed",
    "where": [
        {"property": "category", "op": "in", "value": ["luxury watches", "luxury bags"]},
        {"field": "device_type", "op": "=", "value": "mobile"},
        {"field": "local_hour", "op": "between", "value": [18, 23]},
    ],
    "within_last": {"days": 30},
}

AT_RISK_VIPS = {
    "all": [
        {"computed": "revenue_365d", "op": ">=", "value": 500},
        {"computed": "last_order_at", "op": "before", "value": {"days_ago": 90}},
    ]
}

# slug → (title for the editor, definition)
EXAMPLES: dict[str, tuple[str, dict]] = {
    "hot-leads": ("Hot leads (viewed 3+ outdoor products in 24 h, bought none)", HOT_LEADS),
    "engaged-cart-abandoners": (
        "Engaged cart abandoners (added to cart in 7 days, no order, top 25 % by sessions)",
        ENGAGED_CART_ABANDONERS,
    ),
    "mobile-evening-luxury": ("Mobile evening browsers of luxury categories (last 30 days)", MOBILE_EVENING_LUXURY),
    "at-risk-vips": ("At-risk VIPs (spent 500+ in a year, no order for 90 days)", AT_RISK_VIPS),
}
