"""The URL patterns' order (decision 0059): the serving endpoint is tried first under /api/v1/, and no
named pattern is shadowed by another, so the order changes which view answers no path."""

from __future__ import annotations

import pytest
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, resolve, reverse

from cdp.api.router import api_v1_urls


def _named_patterns(patterns, namespace=""):
    """(qualified name, pattern) for every named pattern, walking includes."""
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _named_patterns(p.url_patterns, ns)
        elif isinstance(p, URLPattern) and p.name:
            yield f"{namespace}{p.name}", p


def _sample_kwargs(pattern: URLPattern) -> dict[str, str]:
    """A value for each of the pattern's arguments that every argument's converter or regex accepts."""
    converters = getattr(pattern.pattern, "converters", {})
    names = list(converters) or list(pattern.pattern.regex.groupindex)
    return {name: ("00000000-0000-4000-8000-000000000001" if "UUID" in type(converters.get(name)).__name__ else "1")
            for name in names}  # fmt: skip


def test_the_serving_endpoint_is_the_first_pattern_under_api_v1():
    # given the /api/v1/ patterns in the order Django tries them
    first = api_v1_urls[0]

    # then the recommendations list comes first, and the top-level include of /api/v1/ right after tracking
    assert first.name == "recommendation-list"
    top = [str(p.pattern) for p in get_resolver().url_patterns]
    assert top.index("api/v1/") == 2
    assert resolve("/api/v1/recommendations/").url_name == "recommendation-list"
    assert resolve("/api/v1/products/P1/").url_name == "product-detail"


def test_every_named_pattern_resolves_to_itself():
    # given every named pattern of the project's URLs, with sample arguments
    checked = 0
    for qualified, pattern in _named_patterns(get_resolver().url_patterns):
        if qualified.startswith("admin:"):
            continue  # Django's and django-rq's admin name some paths twice (e.g. django_rq's dashboard)
        if pattern.pattern.regex.groups and not _sample_kwargs(pattern):
            continue  # positional groups only (admin's internal views): not reversible by name alone
        try:
            path = reverse(qualified, kwargs=_sample_kwargs(pattern) or None)
        except NoReverseMatch:  # a converter that refuses "1" (none of the API's)
            path = None
        if path is None:
            continue
        # when the path is resolved
        match = resolve(path)
        # then it reaches the pattern it was built from, not an earlier one
        assert match.view_name == qualified, (path, match.view_name)
        checked += 1
    assert checked > 40


@pytest.mark.parametrize(
    "path, name",
    [
        ("/v1/track", "tracking:track"),
        ("/v1/consent", "consent"),
        ("/v1/recommendations", "storefront-recommendations"),
        ("/api/v1/recommendations.json", "v1:recommendation-list"),
        ("/api/v1/products/P1/similar/", "v1:product-similar"),
        ("/api/v1/profiles/1/segments/", "v1:profile-segments"),
        ("/api/v1/profiles/1/consent/", "v1:profile-consent-list"),
    ],
)
def test_known_paths_reach_their_views(path, name):
    assert resolve(path).view_name == name
