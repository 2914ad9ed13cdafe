"""OPTIONS answers for every API view, including views whose PUT works on a collection.

DRF's ``SimpleMetadata`` checks object permissions for PUT by calling ``view.get_object()``, which
fails on a view routed without the lookup kwarg (``PUT /api/v1/products/`` is a bulk upsert). Such a
method is described without the object check instead of failing the whole OPTIONS request."""

from __future__ import annotations

import logging

from rest_framework import exceptions
from rest_framework.metadata import SimpleMetadata
from rest_framework.request import clone_request

logger = logging.getLogger("cdp.api")


class ApiMetadata(SimpleMetadata):
    def determine_actions(self, request, view):
        actions = {}
        for method in {"PUT", "POST"} & set(view.allowed_methods):
            view.request = clone_request(request, method)
            try:
                view.check_permissions(view.request)
                lookup = getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", None)
                if method == "PUT" and hasattr(view, "get_object") and lookup in (view.kwargs or {}):
                    view.get_object()
            except (exceptions.APIException, exceptions.PermissionDenied, AssertionError, LookupError):
                pass
            else:
                if hasattr(view, "get_serializer"):
                    try:
                        actions[method] = self.get_serializer_info(view.get_serializer())
                    except Exception as exc:  # a view whose serializer needs request data: say nothing
                        logger.debug("OPTIONS %s: no serializer info for %s (%s)", request.path, method, exc)
            finally:
                view.request = request
        return actions
