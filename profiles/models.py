from __future__ import annotations

import json
import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex, GinIndex, OpClass
from django.db import models
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Concat, Lower

NAME_TRAITS = ("name", "first_name", "last_name", "firstName", "lastName")


def profile_name_text():
    """The person's name as lower-case text (``name``, then first and last, snake or camelCase).

    The trigram index ``profile_name_trgm`` is built on exactly this expression, so
    ``annotate(n=profile_name_text()).filter(n__contains=term.lower())`` is answered from the index.
    """
    text = models.TextField()
    parts = []
    for key in NAME_TRAITS:
        parts += [
            Coalesce(KT(f"traits__{key}"), models.Value("", output_field=text), output_field=text),
            models.Value(" ", output_field=text),
        ]
    return Lower(Concat(*parts[:-1], output_field=text), output_field=text)


class Source(models.Model):
    """Where events come from (a storefront, a backend, an import); its write key sends events."""

    name = models.CharField(max_length=200, unique=True)
    write_key_prefix = models.CharField(max_length=16, editable=False)
    write_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    is_active = models.BooleanField(default=True)
    # Browser origins (scheme://host[:port]) whose pages may send with this write key; "*" = any
    # origin, only by explicit choice. Empty: no browser may use the key (server-side calls still may).
    allowed_origins = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    # HMAC key the shop's backend signs user tokens with (browser recommendations for a user id).
    user_token_secret = models.CharField(max_length=64, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Profile(models.Model):
    """One person. A merged-away profile keeps its row, pointing at the survivor via merged_into.

    ``traits`` holds the latest value of each trait; ``trait_meta`` holds, per trait, when it was
    first seen and last updated (``{"email": {"first": iso, "at": iso}}``), which is what the merge
    policy needs (newest value wins, first-seen time kept). ``computed`` holds computed traits.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    traits = models.JSONField(default=dict, blank=True)
    trait_meta = models.JSONField(default=dict, blank=True)
    computed = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="absorbed")
    first_seen_at = models.DateTimeField(db_index=True)
    last_seen_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            GinIndex(fields=["traits"], name="profile_traits_gin"),
            GinIndex(OpClass(profile_name_text(), name="gin_trgm_ops"), name="profile_name_trgm"),
        ]

    def __str__(self) -> str:
        label = self.traits.get("email") or self.traits.get("name") or str(self.id)[:8]
        return f"{label}{' (merged)' if self.merged_into_id else ''}"

    @property
    def is_merged(self) -> bool:
        return self.merged_into_id is not None


class Identifier(models.Model):
    """A normalised identifier owned by exactly one profile: (kind, value) is unique."""

    kind = models.CharField(max_length=32)
    value = models.CharField(max_length=255)
    # no index of its own: (profile, kind) serves every look-up by profile, and one btree less is
    # written for every identifier created or moved by a merge (decision 0067)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identifiers", db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="identifier_kind_value_uniq")]
        indexes = [models.Index(fields=["profile", "kind"], name="identifier_profile_kind")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class EventType(models.TextChoices):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    ALIAS = "alias"
    GROUP = "group"


class Event(models.Model):
    """An accepted tracking call, stored as received plus the fields cdp derives from it."""

    id = models.BigAutoField(primary_key=True)
    # no index of its own: the unique (source, message_id) index serves look-ups by source, and one
    # btree less is written for every event stitched (decision 0054)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="+", db_index=False)
    message_id = models.CharField(max_length=100)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="events", db_index=False)
    type = models.CharField(max_length=16, choices=EventType.choices)
    name = models.CharField(max_length=200, blank=True, default="")
    user_id = models.CharField(max_length=255, blank=True, default="")
    anonymous_id = models.CharField(max_length=255, blank=True, default="")
    properties = models.JSONField(default=dict, blank=True)
    traits = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(help_text="timestamp corrected for client clock skew")
    original_timestamp = models.DateTimeField(null=True, blank=True, help_text="timestamp as the client sent it")
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    device_type = models.CharField(max_length=8, blank=True, default="")
    local_hour = models.SmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "message_id"], name="event_source_message_uniq")]
        indexes = [
            models.Index(fields=["profile", "occurred_at"], name="event_profile_time"),
            models.Index(fields=["profile", "name", "occurred_at"], name="event_profile_name_time"),
            BrinIndex(fields=["occurred_at"], name="event_time_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name}".strip()


class MergeStatus(models.TextChoices):
    MERGED = "merged"
    REFUSED = "refused"


class Merge(models.Model):
    """Two profiles joined (or a join refused by a guard), with the evidence and what moved.

    Enough is kept to undo it exactly: both profiles' traits before the merge and the ids of the
    events and identifiers that moved from the loser to the winner.
    """

    winner = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_won")
    loser = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_lost")
    status = models.CharField(max_length=8, choices=MergeStatus.choices, default=MergeStatus.MERGED)
    reason = models.CharField(max_length=64, help_text="what linked them, e.g. identifier:email, alias, manual")
    evidence = models.JSONField(default=dict, blank=True)
    score = models.FloatField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True, default="system")
    winner_before = models.JSONField(default=dict, blank=True)
    loser_before = models.JSONField(default=dict, blank=True)
    moved_event_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    moved_identifier_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.status} {self.loser_id} -> {self.winner_id} ({self.reason})"


class CandidateStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    # held back below the review queue's line (CDP_REVIEW_QUEUE_MAX_SHARE); each matching run ranks
    # pending and deferred pairs again and moves them across the line (profiles/identity/fuzzy/review.py)
    DEFERRED = "deferred"


class MatchCandidate(models.Model):
    """Two profiles that may be one person, waiting for a decision (review queue).

    Deterministic resolution files one when a shared email or phone is contradicted by other traits;
    the fuzzy matcher files them with a score. Rejecting one records a never-merge pair.
    """

    profile_a = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    profile_b = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=64)
    score = models.FloatField(null=True, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=CandidateStatus.choices, default=CandidateStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile_a", "profile_b"], name="candidate_pair_uniq"),
            models.CheckConstraint(
                condition=models.Q(profile_a__lt=models.F("profile_b")), name="candidate_pair_ordered"
            ),
        ]
        indexes = [models.Index(fields=["status", "-score"], name="candidate_status_score")]

    def __str__(self) -> str:
        return f"{self.profile_a_id} ~ {self.profile_b_id} ({self.reason}, {self.status})"


class PendingWork(models.Model):
    """Durable follow-up work for a profile, written in the ingesting transaction.

    Ingestion never depends on Redis or workers: it records that a profile changed here, then
    tries to queue a Celery task on commit. Whatever the task does not pick up (broker down,
    worker crashed), the scheduled sweep does.
    """

    profile_id = models.UUIDField(primary_key=True)
    queued_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self) -> str:
        return f"pending {self.profile_id}"


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class MatchingRun(models.Model):
    """One run of the fuzzy identity-matching job, with progress for admin and its report."""

    class Mode(models.TextChoices):
        INCREMENTAL = "incremental", "incremental (new and changed profiles against everyone)"
        FULL = "full", "full (everyone against everyone)"

    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.INCREMENTAL)
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    requested_by = models.CharField(max_length=150, blank=True, default="schedule")
    since = models.DateTimeField(null=True, blank=True, help_text="incremental: profiles changed after this time")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.mode} matching run {self.pk} ({self.status})"

    @property
    def progress_percent(self) -> int:
        return int(100 * self.progress_done / self.progress_total) if self.progress_total else 0


class SchemaKind(models.TextChoices):
    EVENT = "event", "event"
    PROPERTY = "property", "event property"
    TRAIT = "trait", "trait"


class SchemaItem(models.Model):
    """What the shop actually sends (PostHog's event and property definitions): event names, the
    property keys of each event, trait keys; with counts, a few sample values and first/last seen.

    Kept current by ingestion (``profiles.schema``, subscribed to ``hooks.on_events_stored``);
    the segment builder offers these names and flags the ones never seen.
    """

    kind = models.CharField(max_length=8, choices=SchemaKind.choices)
    event = models.CharField(max_length=200, blank=True, default="", help_text="for a property: its event's name")
    name = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0, help_text="events (or, for traits, live profiles) seen with it")
    samples = models.JSONField(default=list, blank=True, help_text="a few distinct values seen")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "event", "name"], name="schema_item_unique")]
        ordering = ["kind", "event", "-count", "name"]
        verbose_name = "schema entry"
        verbose_name_plural = "schema: events, properties and traits"

    def __str__(self) -> str:
        return f"{self.event} · {self.name}" if self.event else self.name


class JsonText(models.TextField):
    """JSON kept as the text it was written as (no ``jsonb`` parsing on the way in).

    The intake log's ``payload``: the accept path writes each call as JSON text it has already
    validated, and the stitch workers read it back as text (``payload::text``); parsing it into
    ``jsonb`` on every insert was a third of the statement's cost (decision 0044). Python values
    that are not text are written as JSON; reads through the ORM give the decoded value.
    """

    def get_prep_value(self, value):
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"))

    def from_db_value(self, value, expression, connection):
        if value is None:
            return value
        try:
            return json.loads(value)
        except ValueError:
            return value


class IntakeEvent(models.Model):
    """An accepted call not stitched yet: the durable intake log (docs/decisions/0039, 0044).

    The tracking API validates, deduplicates and filters a call, writes it here and commits before
    it answers (accepted means stored). Stitch workers (``profiles.tracking.worker``) take the rows
    of one partition in id order, resolve identity for the whole batch, move them into the events
    table and delete them, in one transaction. ``partition`` is a hash of the call's first id, so
    the calls of one browser or user are taken by one worker at a time.

    Shaped for the insert (decision 0044): ``payload`` is JSON text, not ``jsonb``; ``source`` has
    no index of its own (the unique (source, message_id) index serves every look-up by source) and
    no foreign-key constraint (a per-row check on every accepted call; deleting a source still
    deletes its calls through Django's cascade, and a worker sets aside nothing for a call whose
    source is gone: it leaves with its source).
    """

    id = models.BigAutoField(primary_key=True)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    message_id = models.CharField(max_length=100)
    partition = models.SmallIntegerField()
    payload = JsonText()
    received_at = models.DateTimeField()
    # the normalised user and anonymous ids, so the read API can tell a profile has calls waiting (no index: the log is
    # small when workers keep up, and every index would slow the accept path)
    user_id = models.CharField(max_length=255, blank=True, default="")
    anonymous_id = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "message_id"], name="intake_source_message_uniq")]
        indexes = [models.Index(fields=["partition", "id"], name="intake_partition_id")]

    def __str__(self) -> str:
        return f"intake {self.message_id}"


class IntakePartition(models.Model):
    """One row per intake partition: a worker holds its row lock (FOR UPDATE SKIP LOCKED) while it
    stitches a batch of the partition, so no two workers take the same rows. The lock is the lease:
    a killed worker's transaction ends with its connection, a stuck one is ended by PostgreSQL after
    ``CDP_INTAKE_LEASE_SECONDS`` (idle-in-transaction and statement timeouts)."""

    number = models.SmallIntegerField(primary_key=True)
    stitched_at = models.DateTimeField(null=True, blank=True)
    stitched_total = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"intake partition {self.number}"


class IntakePoison(models.Model):
    """A call the stitch workers could not process, set aside with its error so it never blocks the
    rest; visible in admin. Its payload is the call as accepted."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField()
    error = models.TextField()
    set_aside_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "intake poison"

    def __str__(self) -> str:
        return f"poison {self.message_id}: {self.error[:60]}"
