"""The periodic housekeeping: expired export archives go, lost request jobs are queued again."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from consent.models import DataSubjectRequest, ExportArchive
from consent.requests import privacy_request_create, privacy_request_execute
from consent.tasks import privacy_housekeeping

pytestmark = pytest.mark.django_db


def test_housekeeping_deletes_expired_archives_and_requeues_lost_jobs(django_capture_on_commit_callbacks):
    done = privacy_request_create(
        kind="access",
        channel="api",
        requested_by="t",
        identifier_kind="email",
        identifier_value="a@example.com",
        verified=True,
    )
    privacy_request_execute(request_id=str(done.pk))
    ExportArchive.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    lost = privacy_request_create(
        kind="erasure",
        channel="api",
        requested_by="t",
        identifier_kind="email",
        identifier_value="b@example.com",
        verified=True,
    )  # queued; its on-commit enqueue never ran (the test transaction does not commit)
    DataSubjectRequest.objects.filter(pk=lost.pk).update(received_at=timezone.now() - timedelta(hours=1))
    queue = django_rq.get_queue("privacy")
    assert queue.count == 0

    with django_capture_on_commit_callbacks(execute=True):  # django-rq enqueues on commit
        assert privacy_housekeeping() == {"archives_deleted": 1, "requeued": 1}
    assert not ExportArchive.objects.exists()
    assert queue.job_ids == [f"privacy-{lost.pk}"]
