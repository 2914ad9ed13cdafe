"""Data-subject requests: access (a JSON archive) and erasure, with deadline, verification and audit.

A request is created (API, admin, privacy center), verified (a secret-key API call and an e-mail
confirmed in the privacy center count as verified; an admin verifies by hand), queued as a
django-rq job on the ``privacy`` queue, and executed by ``privacy_request_execute``, which walks
the privacy registry. Progress is written outside the erasing transaction so admin can see it.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import secrets
import time
import zlib
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from cdp.lifecycle import job_lease_claim
from profiles.bulk import import_lock_exclusive
from profiles.models import Identifier
from profiles.normalize import normalize_identifier
from profiles.selectors import profile_find_by_identifier

from .models import (
    DataSubjectRequest,
    ExportArchive,
    RequestAuditEntry,
    RequestChannel,
    RequestKind,
    RequestStatus,
    Suppression,
)
from .privacy import privacy_entries, privacy_followups_run
from .privacy_entries import RawJSON
from .selectors import profile_group_ids, profile_live_id
from .services import ConsentError, suppression_hash

logger = logging.getLogger("cdp.privacy")

IDENTIFIER_KINDS = ("email", "phone", "user_id")
OPEN = (RequestStatus.RECEIVED, RequestStatus.VERIFIED, RequestStatus.QUEUED, RequestStatus.RUNNING)
EXPORT_SIGNING_SALT = "cdp.privacy.export"


def mask(kind: str, value: str) -> str:
    """A hint a human can recognise without it being the identifier: j***@e***.com, +44***89."""
    if not value:
        return ""
    if kind == "email" and "@" in value:
        local, _, domain = value.partition("@")
        name, _, tld = domain.rpartition(".")
        return f"{local[:1]}***@{name[:1]}***.{tld}"[:64]
    return f"{value[:3]}***{value[-2:]}" if len(value) > 6 else "***"


def audit(request: DataSubjectRequest, *, actor: str, action: str, **detail) -> None:
    RequestAuditEntry.objects.create(request=request, actor=actor[:150], action=action, detail=detail)


@transaction.atomic
def privacy_request_create(
    *,
    kind: str,
    channel: str,
    requested_by: str,
    profile_id: str | None = None,
    identifier_kind: str | None = None,
    identifier_value: str | None = None,
    verified: bool = False,
) -> DataSubjectRequest:
    """Record a request (deadline: PRIVACY_REQUEST_DAYS from now); queue it at once when verified.

    By identifier, a person nobody knows still gets a request: an erasure then only writes the
    suppression entry, an access request an empty archive (the answer must not depend on whether
    the shop knows the person)."""
    if kind not in RequestKind.values:
        raise ConsentError(f"kind must be one of {', '.join(RequestKind.values)}.", field="kind")
    if channel not in RequestChannel.values:
        raise ConsentError("Unknown channel.", field="channel")
    live = None
    normalised = ""
    if profile_id:
        live = profile_live_id(profile_id=profile_id)
        if live is None:
            raise ConsentError("No profile with this id.", field="profile_id")
    elif identifier_kind:
        if identifier_kind not in IDENTIFIER_KINDS:
            raise ConsentError(f"Identifier kind must be one of {', '.join(IDENTIFIER_KINDS)}.", field=identifier_kind)
        normalised = normalize_identifier(identifier_kind, identifier_value or "") or ""
        if not normalised:
            raise ConsentError(f"Not a usable {identifier_kind}.", field=identifier_kind)
        found = profile_find_by_identifier(kind=identifier_kind, value=normalised)
        live = found.pk if found else None
    else:
        raise ConsentError("Give profile_id, email, phone or user_id.", field="profile_id")
    now = timezone.now()
    request = DataSubjectRequest.objects.create(
        kind=kind,
        channel=channel,
        profile_id=live,
        identifier_kind=identifier_kind or "",
        identifier_value=normalised,
        subject_hint=mask(identifier_kind or "", normalised) if normalised else f"profile {str(live)[:8]}",
        received_at=now,
        due_at=now + timedelta(days=settings.PRIVACY_REQUEST_DAYS),
        requested_by=requested_by[:150],
    )
    audit(request, actor=requested_by, action="created", channel=channel, kind=kind, known=live is not None)
    if verified:
        privacy_request_verify(request=request, actor=requested_by)
        request = privacy_request_enqueue(request=request, actor=requested_by)
    return request


@transaction.atomic
def privacy_request_verify(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    request = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    if request.status != RequestStatus.RECEIVED:
        raise ConsentError(f"Only a received request can be verified (this one is {request.status}).")
    request.status = RequestStatus.VERIFIED
    request.verified_at = timezone.now()
    request.verified_by = actor[:150]
    request.save(update_fields=["status", "verified_at", "verified_by"])
    audit(request, actor=actor, action="verified")
    return request


@transaction.atomic
def privacy_request_enqueue(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    """Queue the job (after commit). A verified or failed request can be (re)run."""
    request = DataSubjectRequest.objects.select_for_update().get(pk=request.pk)
    if request.status not in (RequestStatus.VERIFIED, RequestStatus.FAILED, RequestStatus.QUEUED):
        raise ConsentError(f"Only a verified (or failed) request can be run (this one is {request.status}).")
    request.status = RequestStatus.QUEUED
    request.job_id = f"privacy-{request.pk}"
    request.progress = 0.0
    request.progress_message = "queued"
    request.error = ""
    request.save(update_fields=["status", "job_id", "progress", "progress_message", "error"])
    audit(request, actor=actor, action="queued")
    request_id = str(request.pk)
    transaction.on_commit(lambda: _enqueue(request_id))
    return request


def _enqueue(request_id: str) -> None:
    """Put the job on the rq ``privacy`` queue; if Redis is down the sweep queues it later."""
    try:
        import django_rq

        from .jobs import privacy_request_run

        django_rq.get_queue("privacy").enqueue(
            privacy_request_run, request_id, job_id=f"privacy-{request_id}", result_ttl=3600, failure_ttl=86400
        )
    except Exception as exc:
        logger.warning("could not queue privacy request %s (%s); the sweep will retry", request_id, exc)


def privacy_requests_sweep(*, older_than_seconds: int = 300) -> int:
    """Re-queue requests stuck in ``queued`` (Redis was down, the job was lost)."""
    stuck = DataSubjectRequest.objects.filter(
        status=RequestStatus.QUEUED, received_at__lt=timezone.now() - timedelta(seconds=older_than_seconds)
    ).values_list("pk", flat=True)
    count = 0
    for pk in stuck:
        _enqueue(str(pk))
        count += 1
    return count


LEASE_KIND = "privacy-request"


def privacy_request_requeue(request_id) -> None:
    """cdp.lifecycle's sweep: the worker running the request died (an erasure rolled back whole);
    queue it again (after commit)."""
    request = DataSubjectRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None or request.status != RequestStatus.RUNNING:
        return
    request.status, request.progress, request.progress_message = RequestStatus.QUEUED, 0.0, "requeued"
    request.save(update_fields=["status", "progress", "progress_message"])
    audit(request, actor="sweep", action="requeued", reason="worker lost")
    transaction.on_commit(lambda: _enqueue(str(request_id)))


def privacy_request_fail(request_id, reason: str) -> None:
    """cdp.lifecycle's sweep: the request's worker died too often; failed (admin's *run* retries)."""
    request = DataSubjectRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None or request.status != RequestStatus.RUNNING:
        return
    DataSubjectRequest.objects.filter(pk=request.pk).update(
        status=RequestStatus.FAILED, error=reason[:2000], finished_at=timezone.now()
    )
    audit(request, actor="sweep", action="failed", error="worker lost")


def _progress(request_id, value: float, message: str) -> None:
    DataSubjectRequest.objects.filter(pk=request_id).update(progress=round(value, 3), progress_message=message[:200])


def privacy_request_execute(*, request_id: str, actor: str = "rq") -> DataSubjectRequest:
    """Run a queued request (the rq job). Safe to run twice: a finished request is left alone, and a
    request another worker is running right now is skipped (session advisory lock)."""
    lock = zlib.crc32(f"privacy-request:{request_id}".encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock])
        if not cursor.fetchone()[0]:
            return DataSubjectRequest.objects.get(pk=request_id)
    try:
        return _execute_locked(request_id, actor)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])


def _execute_locked(request_id: str, actor: str) -> DataSubjectRequest:
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().get(pk=request_id)
        if request.status not in (RequestStatus.QUEUED, RequestStatus.RUNNING, RequestStatus.VERIFIED):
            return request
        request.status = RequestStatus.RUNNING
        request.started_at = timezone.now()
        request.progress, request.progress_message = 0.05, "collecting the person's profiles"
        request.save(update_fields=["status", "started_at", "progress", "progress_message"])
        audit(request, actor=actor, action="started")
        # cdp's lifecycle: a lease renewed by a heartbeat; a dead worker's request is requeued by the sweep
        lease = job_lease_claim(kind=LEASE_KIND, object_id=request.pk)
    try:
        with lease:
            if request.kind == RequestKind.ACCESS:
                _execute_access(request, actor)
            else:
                _execute_erasure(request, actor)
    except Exception as exc:
        logger.exception("privacy request %s failed", request_id)
        with transaction.atomic():
            DataSubjectRequest.objects.filter(pk=request_id).update(
                status=RequestStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
            )
            audit(request, actor=actor, action="failed", error=type(exc).__name__)
        raise
    request.refresh_from_db()
    return request


# --- access ----------------------------------------------------------------------------------------


def privacy_export_build(*, profile_ids: list[str], progress=None) -> bytes:
    """The person's archive: every registry entry's export, as gzip-compressed JSON."""
    entries = privacy_entries()
    parts = []
    for n, entry in enumerate(entries):
        if progress:
            progress(0.1 + 0.8 * n / max(len(entries), 1), f"exporting {entry.name}")
        data = entry.export(profile_ids) if profile_ids else {}
        parts.append((entry.name, data))
    header = {"format": "cdp-privacy-export/1", "generated_at": timezone.now(), "profile_ids": profile_ids}
    chunks = [json.dumps(header, cls=DjangoJSONEncoder)[:-1], ', "sections": {']
    for i, (name, data) in enumerate(parts):
        chunks.append(("," if i else "") + json.dumps(name) + ": {")
        for j, (key, value) in enumerate(data.items()):
            encoded = str(value) if isinstance(value, RawJSON) else json.dumps(value, cls=DjangoJSONEncoder)
            chunks.append(("," if j else "") + json.dumps(key) + ": " + encoded)
        chunks.append("}")
    chunks.append("}}")
    return gzip.compress("".join(chunks).encode(), compresslevel=5)


def _execute_access(request: DataSubjectRequest, actor: str) -> None:
    group = profile_group_ids(profile_id=request.profile_id) if request.profile_id else []
    content = privacy_export_build(profile_ids=group, progress=lambda v, m: _progress(request.pk, v, m))
    now = timezone.now()
    with transaction.atomic():
        ExportArchive.objects.filter(request=request).delete()
        ExportArchive.objects.create(
            request=request,
            profile_id=group[0] if group else None,
            content=content,
            size=len(content),
            token_hash=secrets.token_hex(32),
            expires_at=now + timedelta(hours=settings.PRIVACY_EXPORT_LINK_HOURS),
        )
        DataSubjectRequest.objects.filter(pk=request.pk).update(
            status=RequestStatus.DONE,
            finished_at=now,
            progress=1.0,
            progress_message="archive ready",
            identifier_value="",
            result={"profiles": len(group), "bytes": len(content)},
        )
        audit(request, actor=actor, action="exported", profiles=len(group), bytes=len(content))


def export_download_token(*, archive: ExportArchive) -> str:
    return signing.dumps({"a": archive.pk, "k": archive.token_hash[:24]}, salt=EXPORT_SIGNING_SALT, compress=True)


def export_download_path(*, request: DataSubjectRequest) -> str | None:
    """A signed link to the archive, valid for PRIVACY_EXPORT_LINK_HOURS and while the archive exists."""
    archive = ExportArchive.objects.filter(request=request, expires_at__gt=timezone.now()).first()
    if archive is None:
        return None
    return reverse("privacy-export-download", kwargs={"token": export_download_token(archive=archive)})


def export_archive_by_token(*, token: str) -> ExportArchive | None:
    """The archive a download link points at, or None when the link is forged, expired or revoked."""
    try:
        data = signing.loads(token, salt=EXPORT_SIGNING_SALT, max_age=settings.PRIVACY_EXPORT_LINK_HOURS * 3600)
    except signing.BadSignature:
        return None
    archive = ExportArchive.objects.filter(pk=data.get("a"), expires_at__gt=timezone.now()).first()
    if archive is None or not secrets.compare_digest(archive.token_hash[:24], str(data.get("k"))):
        return None
    return archive


def export_archive_downloaded(*, archive: ExportArchive, actor: str) -> bytes:
    with transaction.atomic():
        ExportArchive.objects.filter(pk=archive.pk).update(downloads=archive.downloads + 1)
        audit(archive.request, actor=actor, action="downloaded")
    return gzip.decompress(bytes(archive.content))


def export_archives_purge() -> int:
    deleted, _ = ExportArchive.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


# --- erasure ---------------------------------------------------------------------------------------


def _execute_erasure(request: DataSubjectRequest, actor: str) -> None:
    _progress(request.pk, 0.1, "erasing in every app")
    # the erasure commits; the entries' follow-ups (stored models rewritten without the person) run
    # right after that commit, inside privacy_erase; the request is done only once they have finished
    result = privacy_erase(
        profile_id=str(request.profile_id) if request.profile_id else None,
        extra_identifiers=[(request.identifier_kind, request.identifier_value)] if request.identifier_value else [],
        request=request,
    )
    with transaction.atomic():
        DataSubjectRequest.objects.filter(pk=request.pk).update(
            status=RequestStatus.DONE,
            finished_at=timezone.now(),
            progress=1.0,
            progress_message="erased",
            profile=None,
            identifier_value="",
            result=result,
        )
        audit(request, actor=actor, action="erased", **result)


class _GroupMoved(Exception):
    """The person's profiles or identifiers changed between the unlocked read and the locks."""

    def __init__(self, identifiers: set) -> None:
        super().__init__("the person's group changed while it was being locked")
        self.identifiers = identifiers


ERASE_ATTEMPTS = 8


def _group_identifiers(group: list[str]) -> set[tuple[str, str]]:
    return set(Identifier.objects.filter(profile_id__in=group).values_list("kind", "value"))


def erasure_lock_person(
    *, profile_id: str | None, identifiers: set[tuple[str, str]]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Lock a person for erasure the way ingestion locks what it writes, and return their whole group
    (live profile + every profile merged into it) and identifiers as they are under the locks.

    One lock order with ingestion and merges (decision 0004): advisory locks on every identifier (one
    sorted statement), then the group's profile rows ``FOR UPDATE`` in id order. Then the group and
    its identifiers are read again: when a merge moved the live profile, or ingestion attached an
    identifier, between the unlocked read and the locks, ``_GroupMoved`` makes the caller roll back
    and try again with everything seen so far, until the group is stable under the locks.
    Levels 1 then 2 of ``profiles/locks.py``'s one lock order."""
    from profiles.locks import lock_identifier_keys, lock_profiles

    group = profile_group_ids(profile_id=profile_id) if profile_id else []
    seen = set(identifiers) | _group_identifiers(group)
    lock_identifier_keys(seen)
    lock_profiles(group)
    stable = profile_group_ids(profile_id=profile_id) if profile_id else []
    now_identifiers = set(identifiers) | _group_identifiers(stable)
    if set(stable) != set(group) or not now_identifiers <= seen:
        raise _GroupMoved(seen | now_identifiers)
    return stable, now_identifiers


def privacy_erase(
    *,
    profile_id: str | None,
    extra_identifiers: list[tuple[str, str]] = (),
    request: DataSubjectRequest | None = None,
    progress=None,
) -> dict:
    """Forget a person across every merged profile and every registered app, in one transaction,
    with suppression entries for their identifiers; cache keys naming them are purged on commit.
    The person is locked first (``erasure_lock_person``), so no merge or ingestion of theirs runs
    inside the erasure. Returns counts (never personal data)."""
    from profiles.tracking.ingest import RETRYABLE

    known = {(k, v) for k, v in extra_identifiers if k and v}
    for attempt in range(1, ERASE_ATTEMPTS + 1):
        try:
            followups: dict = {}
            with transaction.atomic():
                import_lock_exclusive()  # no order import runs between our suppression entries and its check
                group, identifiers = erasure_lock_person(profile_id=profile_id, identifiers=known)
                result = _erase_locked(group, identifiers, request, progress)
                # the entries' follow-ups (stored models rewritten without the person) run right after
                # the commit: at once when called outside a transaction, as the rq job does
                transaction.on_commit(lambda f=followups: f.update(privacy_followups_run()), robust=False)
            result["followups"] = followups  # filled by then, unless the caller's transaction is still open
            return result
        except _GroupMoved as moved:
            known |= moved.identifiers
            logger.info("erasure: the person's group moved; locking again (attempt %d)", attempt)
        except DatabaseError as exc:
            if attempt == ERASE_ATTEMPTS or not isinstance(exc.__cause__ or exc, RETRYABLE):
                raise
            logger.info("erasure: retrying after %s (attempt %d)", type(exc.__cause__).__name__, attempt)
            time.sleep(random.uniform(0.01, 0.1) * attempt)
    raise RuntimeError("the person's profiles kept changing during erasure; run the request again")


def _erase_locked(group: list[str], identifiers: set, request, progress) -> dict:
    entries = privacy_entries()
    for n, entry in enumerate(entries):
        if progress:
            progress(0.1 + 0.8 * n / max(len(entries), 1), f"erasing {entry.name}")
        if group:
            entry.erase(group)
    Suppression.objects.bulk_create(
        [Suppression(hash=suppression_hash(kind, value), kind=kind, request=request) for kind, value in identifiers],
        ignore_conflicts=True,
    )
    keys = [*group, *(v for _, v in identifiers)]
    transaction.on_commit(lambda: cache_purge_person(keys=keys))
    return {"profiles": len(group), "identifiers_suppressed": len(identifiers), "entries": [e.name for e in entries]}


def cache_purge_person(*, keys: list[str]) -> int:
    """Delete every cache key that names one of the person's profile ids or identifiers."""
    if not keys:
        return 0
    try:
        client = cache._cache.get_client(None, write=True)  # django's RedisCache: the raw redis client
    except Exception:  # a non-Redis cache (tests may use locmem): clear nothing but say so
        logger.warning("cache purge: the cache is not Redis; nothing purged")
        return 0
    deleted = 0
    for value in keys:
        if len(value) < 6:  # too short to name a person; would match unrelated keys
            continue
        pattern = "*" + "".join(f"[{c}]" if c in "*?[]\\" else c for c in value) + "*"
        batch = list(client.scan_iter(match=pattern, count=1000))
        if batch:
            deleted += client.delete(*batch)
    return deleted
