"""The consent ledger: append-only in the database, current state derived, following merges."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.utils import InternalError, ProgrammingError
from django.utils import timezone

from consent.models import ConsentRecord, ConsentState, LedgerIsAppendOnly
from consent.selectors import consent_granted, consent_granted_q, consent_states
from consent.services import consent_record
from profiles.identity.merge import profile_merge, profile_unmerge
from profiles.models import Profile

pytestmark = pytest.mark.django_db

GuardError = (InternalError, ProgrammingError)


def _profile(**traits) -> Profile:
    now = timezone.now()
    return Profile.objects.create(traits=traits, first_seen_at=now, last_seen_at=now)


def test_without_records_only_analytics_is_granted():
    p = _profile()
    assert consent_granted(profile_id=p.pk, purpose="analytics") is True
    for purpose in ("personalisation", "marketing", "third_party_sharing"):
        assert consent_granted(profile_id=p.pk, purpose=purpose) is False


def test_latest_answer_wins_and_q_filter_agrees():
    a, b, c = _profile(), _profile(), _profile()
    t0 = timezone.now() - timedelta(days=2)
    consent_record(profile_id=a.pk, choices={"marketing": True, "analytics": False}, source="banner", at=t0)
    consent_record(profile_id=b.pk, choices={"marketing": True}, source="banner", at=t0)
    consent_record(profile_id=b.pk, choices={"marketing": False}, source="privacy_center")

    assert consent_granted(profile_id=a.pk, purpose="marketing") is True
    assert consent_granted(profile_id=b.pk, purpose="marketing") is False
    assert consent_granted(profile_id=b.pk, purpose="marketing", at=t0 + timedelta(hours=1)) is True
    ids = {a.pk, b.pk, c.pk}
    assert set(Profile.objects.filter(pk__in=ids).filter(consent_granted_q(purpose="marketing"))) == {a}
    # analytics defaults to granted: everyone except the one who denied it
    assert set(Profile.objects.filter(pk__in=ids).filter(consent_granted_q(purpose="analytics"))) == {b, c}
    states = consent_states(profile_id=b.pk)
    assert states["marketing"]["granted"] is False and states["marketing"]["source"] == "privacy_center"
    assert states["personalisation"]["default"] is True


def test_expired_answer_falls_back_to_default():
    p = _profile()
    consent_record(profile_id=p.pk, choices={"marketing": True}, source="api", at=timezone.now() - timedelta(days=400))
    assert consent_granted(profile_id=p.pk, purpose="marketing") is False
    assert not Profile.objects.filter(pk=p.pk).filter(consent_granted_q(purpose="marketing")).exists()
    assert consent_states(profile_id=p.pk)["marketing"]["expired"] is True


def test_state_follows_merge_and_unmerge(django_capture_on_commit_callbacks):
    winner, loser = _profile(), _profile()
    consent_record(profile_id=loser.pk, choices={"personalisation": True}, source="banner")
    assert consent_granted(profile_id=winner.pk, purpose="personalisation") is False
    with django_capture_on_commit_callbacks(execute=True):  # merge hooks fire after commit
        merge = profile_merge(winner=winner, loser=loser, reason="manual")
    assert consent_granted(profile_id=winner.pk, purpose="personalisation") is True
    assert consent_granted(profile_id=loser.pk, purpose="personalisation") is True  # the merged id resolves
    assert not ConsentState.objects.filter(profile_id=loser.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        profile_unmerge(merge=merge)
    assert consent_granted(profile_id=winner.pk, purpose="personalisation") is False
    assert consent_granted(profile_id=loser.pk, purpose="personalisation") is True


def test_orm_refuses_update_and_delete_of_the_ledger():
    p = _profile()
    (record,) = consent_record(profile_id=p.pk, choices={"marketing": True}, source="banner")
    with pytest.raises(LedgerIsAppendOnly):
        ConsentRecord.objects.filter(pk=record.pk).update(granted=False)
    with pytest.raises(LedgerIsAppendOnly):
        ConsentRecord.objects.filter(pk=record.pk).delete()
    record.granted = False
    with pytest.raises(LedgerIsAppendOnly):
        record.save()
    with pytest.raises(LedgerIsAppendOnly):
        record.delete()
    assert ConsentRecord.objects.get(pk=record.pk).granted is True


def test_database_refuses_update_and_delete_of_the_ledger():
    p = _profile()
    (record,) = consent_record(profile_id=p.pk, choices={"marketing": True}, source="banner")
    with (
        pytest.raises(GuardError, match="append-only: DELETE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM consent_consentrecord WHERE id = %s", [record.pk])
    with (
        pytest.raises(GuardError, match="append-only: UPDATE refused"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE consent_consentrecord SET source = 'x' WHERE id = %s", [record.pk])
    # even with the anonymisation switch on, only re-keying + stripping is allowed
    with (
        pytest.raises(GuardError, match="only an anonymising update"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL cdp.consent_anonymise = 'on'")
        cursor.execute(
            "UPDATE consent_consentrecord SET granted = false, anonymised_at = now() WHERE id = %s", [record.pk]
        )
    record.refresh_from_db()
    assert record.granted is True and record.source == "banner"


def test_state_rebuild_repairs_a_missed_merge_hook():
    from io import StringIO

    from django.core.management import call_command

    winner, loser = _profile(), _profile()
    consent_record(profile_id=loser.pk, choices={"marketing": True}, source="banner")
    profile_merge(winner=winner, loser=loser, reason="manual")  # its hook never runs (no commit here)
    assert consent_granted(profile_id=winner.pk, purpose="marketing") is False
    out = StringIO()
    call_command("consent_state_rebuild", stdout=out)
    assert "1 profile x purpose rows" in out.getvalue()
    assert consent_granted(profile_id=winner.pk, purpose="marketing") is True
    assert not ConsentState.objects.filter(profile_id=loser.pk).exists()


def test_upper_apps_hear_about_new_answers(django_capture_on_commit_callbacks):
    from consent import hooks

    heard = []

    def listener(**kwargs):
        heard.append(kwargs)

    hooks.on_consent_changed.subscribe(listener)
    try:
        p = _profile()
        with django_capture_on_commit_callbacks(execute=True):
            consent_record(profile_id=p.pk, choices={"marketing": True, "analytics": True}, source="api")
    finally:
        hooks.on_consent_changed.unsubscribe(listener)
    assert heard == [{"profile_ids": [str(p.pk)], "purposes": ["analytics", "marketing"]}]
