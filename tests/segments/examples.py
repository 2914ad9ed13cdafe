"""The four example segments of the issue, as written in docs/segments.md."""

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
