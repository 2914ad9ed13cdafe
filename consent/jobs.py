"""rq jobs of consent (queue ``privacy``): data-subject requests. Thin: they call one service."""

from __future__ import annotations

from django_rq import job


@job("privacy")
def privacy_request_run(request_id: str) -> str:
    """Execute one data-subject request; idempotent (a finished request is left alone)."""
    from .requests import privacy_request_execute

    return privacy_request_execute(request_id=request_id).status
