"""Panels that upper apps add to the profile page (consent, segments, recommendations...).

Profiles is the lowest layer and may not import the apps above it, so the profile page asks this
registry: each app registers a function in its own ``admin`` module that returns the rows of its
panel for one profile. A failing panel shows its error in place and never breaks the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

logger = logging.getLogger("cdp.admin")


@dataclass
class PanelContent:
    """A table (``headers`` + ``rows`` of cells; cells may be safe HTML from ``format_html``) with a note."""

    headers: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    empty: str = "Nothing yet."
    note: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, url)


@dataclass
class Panel:
    key: str
    title: str
    order: int
    render: Callable[..., PanelContent]


_panels: dict[str, Panel] = {}


def register_profile_panel(*, key: str, title: str, order: int, render: Callable[..., PanelContent]) -> None:
    """``render(request=..., profile=...)`` returns a :class:`PanelContent`; ``order`` sorts panels."""
    _panels[key] = Panel(key=key, title=title, order=order, render=render)


def profile_panels() -> list[Panel]:
    return sorted(_panels.values(), key=lambda p: (p.order, p.key))


def profile_panels_html(*, request, profile) -> str:
    parts = []
    for panel in profile_panels():
        try:
            content = panel.render(request=request, profile=profile)
            error = ""
        except Exception as exc:  # one broken panel must not take the profile page down
            logger.exception("profile panel %s failed", panel.key)
            content, error = PanelContent(), f"This panel could not be shown: {type(exc).__name__}."
        parts.append(
            render_to_string("admin/profiles/profile/panel.html", {"panel": panel, "content": content, "error": error})
        )
    return mark_safe("".join(parts))  # noqa: S308  (each part is a rendered, escaped template)
