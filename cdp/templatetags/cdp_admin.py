"""Template tags of the admin home: the dashboard's figures come from ``cdp.dashboard`` (a selector)."""

from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

from cdp import dashboard

register = template.Library()


@register.simple_tag(takes_context=True)
def cdp_dashboard(context):
    request = context.get("request")
    if request is None or not request.user.is_active or not request.user.is_staff:
        return None
    return dashboard.dashboard()


@register.filter
def svg(markup: str):
    """Charts are built by ``cdp.charts`` from numbers and escaped names only."""
    return mark_safe(markup)  # noqa: S308


@register.filter
def duration(seconds) -> str:
    seconds = int(seconds or 0)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"
