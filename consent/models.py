"""Consent and privacy: purposes, the append-only consent ledger, its derived current state,
data-subject requests with their audit log and export archives, and the suppression list.

The ledger (``ConsentRecord``) is append-only in the database too: a trigger refuses DELETE, and
refuses UPDATE unless the erasure service has set the transaction-local setting
``cdp.consent_anonymise = 'on'`` and the update only re-keys the subject and strips the evidence
(decision 0009).
"""

from __future__ import annotations

import uuid

from django.db import models


class LegalBasis(models.TextChoices):
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"


class Purpose(models.Model):
    """What data may be used for. ``key`` is what the API and the selectors speak."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    legal_basis = models.CharField(max_length=24, choices=LegalBasis.choices, default=LegalBasis.CONSENT)
    policy_version = models.CharField(max_length=32, default="1")
    default_granted = models.BooleanField(
        default=False, help_text="the state of a person who never answered (or whose answer expired)"
    )
    validity_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="how long an answer holds; empty = CONSENT_VALIDITY_DAYS"
    )
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "key"]

    def __str__(self) -> str:
        return self.name


class LedgerIsAppendOnly(Exception):
    """Raised by the ORM before the database trigger would refuse the same thing."""


class ConsentRecordQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise LedgerIsAppendOnly("The consent ledger is append-only: record a new answer instead.")

    def delete(self):
        raise LedgerIsAppendOnly("The consent ledger is append-only: records are never deleted.")


class ConsentRecord(models.Model):
    """One answer of one person for one purpose. Never updated, never deleted (see module doc).

    ``profile`` is the profile the answer was recorded on (not necessarily live: state follows
    merges). It is a reference without a database constraint, so an erased person's records stay as
    anonymised proof re-keyed to a random subject id.
    """

    id = models.BigAutoField(primary_key=True)
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", db_index=True
    )
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="records")
    granted = models.BooleanField()
    source = models.CharField(max_length=32, help_text="banner, event, api, privacy_center, admin, import")
    policy_version = models.CharField(max_length=32)
    evidence = models.JSONField(default=dict, blank=True, help_text="banner id, salted hash of the IP, user agent")
    recorded_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ConsentRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-recorded_at", "-id"]
        indexes = [models.Index(fields=["profile", "purpose", "-recorded_at"], name="consent_record_latest")]

    def __str__(self) -> str:
        return f"{self.purpose_id} {'granted' if self.granted else 'denied'} ({self.source})"

    def save(self, *args, **kwargs):
        if not self._state.adding:  # a guard, not domain logic: the trigger refuses it anyway
            raise LedgerIsAppendOnly("The consent ledger is append-only: record a new answer instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerIsAppendOnly("The consent ledger is append-only: records are never deleted.")


class ConsentState(models.Model):
    """Derived: the latest answer per live profile and purpose over it and every profile merged
    into it. Rebuilt from the ledger by ``consent_state_refresh``; never the source of truth."""

    profile = models.ForeignKey("profiles.Profile", on_delete=models.CASCADE, related_name="+")
    purpose = models.ForeignKey(Purpose, on_delete=models.CASCADE, related_name="+")
    granted = models.BooleanField()
    source = models.CharField(max_length=32)
    policy_version = models.CharField(max_length=32)
    recorded_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    record = models.ForeignKey(ConsentRecord, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["profile", "purpose"], name="consent_state_uniq")]
        indexes = [models.Index(fields=["purpose", "granted", "profile"], name="consent_state_lookup")]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.purpose_id} {'granted' if self.granted else 'denied'}"


class Suppression(models.Model):
    """A salted hash of an erased person's identifier: events carrying it are dropped until the
    person opts in again."""

    hash = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=32)
    request = models.ForeignKey("DataSubjectRequest", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind}:{self.hash[:12]}…"


class RequestKind(models.TextChoices):
    ACCESS = "access"
    ERASURE = "erasure"


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "received (awaiting verification)"
    VERIFIED = "verified"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"


class RequestChannel(models.TextChoices):
    API = "api"
    ADMIN = "admin"
    PRIVACY_CENTER = "privacy_center"


class DataSubjectRequest(models.Model):
    """An access (export) or erasure request, with its deadline and an audit log.

    The identifier a request was made with is kept only until it is executed; after an erasure the
    row holds no personal data (``subject_hint`` is masked, ``profile`` is gone).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=8, choices=RequestKind.choices)
    status = models.CharField(max_length=10, choices=RequestStatus.choices, default=RequestStatus.RECEIVED)
    channel = models.CharField(max_length=16, choices=RequestChannel.choices)
    profile = models.ForeignKey(
        "profiles.Profile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    identifier_kind = models.CharField(max_length=16, blank=True, default="")
    identifier_value = models.CharField(max_length=255, blank=True, default="")
    subject_hint = models.CharField(max_length=64, blank=True, default="", help_text="masked, e.g. j***@e***.com")
    received_at = models.DateTimeField(db_index=True)
    due_at = models.DateTimeField(db_index=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.CharField(max_length=150, blank=True, default="")
    requested_by = models.CharField(max_length=150, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True, default="")
    job_id = models.CharField(max_length=64, blank=True, default="")
    result = models.JSONField(default=dict, blank=True, help_text="counts per registry entry; never personal data")
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["due_at"]
        indexes = [models.Index(fields=["status", "due_at"], name="dsr_status_due")]

    def __str__(self) -> str:
        return f"{self.kind} request {str(self.pk)[:8]} ({self.status})"


class RequestAuditEntry(models.Model):
    """Who did what to a request, written in the same transaction as the change."""

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.CASCADE, related_name="audit")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=32)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"


class ExportArchive(models.Model):
    """The JSON archive of an access request (gzip), downloadable with an expiring token."""

    request = models.OneToOneField(DataSubjectRequest, on_delete=models.CASCADE, related_name="archive")
    profile = models.ForeignKey(
        "profiles.Profile", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False, related_name="+"
    )
    content = models.BinaryField()
    size = models.PositiveIntegerField(default=0)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    downloads = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"export of {self.request_id}"


class PrivacyCenterToken(models.Model):
    """A one-time, expiring e-mail verification link of the privacy center (only hashes stored)."""

    token_hash = models.CharField(max_length=64, unique=True)
    email_hash = models.CharField(max_length=64, db_index=True)
    email_sealed = models.TextField(
        blank=True, default="", help_text="the address, encrypted with a key only the link itself carries"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    session_key = models.CharField(
        max_length=40, blank=True, default="", help_text="the privacy-center session it opened (ended on erasure)"
    )

    def __str__(self) -> str:
        return f"privacy center link {self.token_hash[:8]}…"
