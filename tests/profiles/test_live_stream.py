"""The live event stream per source (Segment's debugger): latest accepted events, and rejected
calls with their errors, kept briefly in Redis; the page refreshes by itself."""

from __future__ import annotations

import pytest

from profiles.models import Profile, Source
from profiles.services import source_create
from profiles.tracking.debugger import KEEP, rejections_recent, rejections_record
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db
LIVE = "/admin/profiles/event/live/"


def test_stream_shows_the_sources_latest_events_and_its_rejected_calls(admin_client, write_key):
    client = writer(write_key)
    assert call(client, "track", userId="u1", event="Checkout Started", properties={"step": 2}).status_code == 200
    assert call(client, "track", userId="u1").status_code == 400  # no event name: rejected
    batch(client, {"type": "track", "userId": "u2", "event": "Coupon Applied"}, {"type": "nonsense"})
    other, other_key = source_create(name="backend")
    call(writer(other_key), "track", userId="u3", event="Refund Issued")

    source = Source.objects.exclude(pk=other.pk).get()
    html = admin_client.get(LIVE, {"source": source.pk}).content.decode()

    accepted = html.split('id="live-accepted"')[1].split("</table>")[0]
    assert "Checkout Started" in accepted and "step: 2" in accepted and "Coupon Applied" in accepted
    assert "Refund Issued" not in accepted  # another source's event
    rejected = html.split('id="live-rejected"')[1].split("</table>")[0]
    assert rejected.count("<tr>") == 3  # header + two rejected calls
    assert "type: nonsense" in rejected and "event:" in rejected
    assert 'data-refresh-seconds="3"' in html


def test_rejections_are_capped_and_redis_trouble_is_swallowed(monkeypatch):
    rejections_record(source_id=99, rejections=[{"errors": {"x": ["bad"]}, "call": {"type": "t"}}] * (KEEP + 20))
    assert len(rejections_recent(source_id=99, limit=KEEP + 50)) == KEEP

    from profiles.tracking import debugger

    def broken(key):
        raise ConnectionError("redis down")

    monkeypatch.setattr(debugger, "_client", broken)
    rejections_record(source_id=99, rejections=[{"errors": {}, "call": {}}])  # does not raise
    assert rejections_recent(source_id=99) == []


def test_stream_needs_the_view_permission(client, django_user_model):
    staff = django_user_model.objects.create_user("s", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(LIVE).status_code == 403


def test_erasure_drops_the_persons_rejected_calls_from_the_debugger(write_key):
    from consent.requests import privacy_erase

    # given a person's accepted call and their rejected one, and someone else's rejected call
    client = writer(write_key)
    assert call(client, "track", userId="erase-me", event="Checkout Started").status_code == 200
    assert call(client, "track", userId="erase-me").status_code == 400
    assert call(client, "track", userId="keep-me").status_code == 400
    source = Source.objects.get()
    assert len(rejections_recent(source_id=source.pk)) == 2
    # when the person is erased
    profile_id = Profile.objects.get(identifiers__kind="user_id", identifiers__value="erase-me").pk
    privacy_erase(profile_id=str(profile_id))
    # then only the other person's rejected call is still shown
    assert [r["call"].get("userId") for r in rejections_recent(source_id=source.pk)] == ["keep-me"]
