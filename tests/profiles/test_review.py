"""The review queue: approving merges through the usual record, rejecting makes a never-merge pair."""

import pytest

from profiles import services
from profiles.models import CandidateStatus, MatchCandidate, MatchingRun, Merge, MergeStatus, RunStatus
from tests.profiles.helpers import call, writer

pytestmark = pytest.mark.django_db


@pytest.fixture
def family_pair(write_key):
    client = writer(write_key)
    call(client, "identify", userId="ann", traits={"email": "fam@example.com", "first_name": "Ann"})
    call(client, "identify", anonymousId="dev", traits={"email": "fam@example.com", "first_name": "Annie"})
    return MatchCandidate.objects.get()


def test_approve_merges_and_records_the_decision(family_pair):
    services.candidate_approve(candidate=family_pair, actor="rev")
    family_pair.refresh_from_db()
    assert (family_pair.status, family_pair.decided_by) == (CandidateStatus.APPROVED, "rev")
    merge = Merge.objects.get(status=MergeStatus.MERGED)
    assert (merge.reason, merge.actor, merge.evidence["candidate"]) == ("review", "rev", family_pair.pk)
    services.profile_unmerge(merge=merge)  # and it can be undone like any merge


def test_reject_makes_a_never_merge_pair_that_later_events_respect(family_pair, write_key):
    services.candidate_reject(candidate=family_pair, actor="rev")
    call(writer(write_key), "identify", userId="ann", anonymousId="dev")
    assert not Merge.objects.filter(status=MergeStatus.MERGED).exists()
    assert Merge.objects.get(status=MergeStatus.REFUSED).evidence["guard"] == "never_merge"


def test_a_decided_pair_cannot_be_decided_again(family_pair):
    services.candidate_reject(candidate=family_pair, actor="rev")
    with pytest.raises(ValueError, match="already decided"):
        services.candidate_approve(candidate=family_pair, actor="rev")


def test_admin_actions_decide_and_report(admin_client, family_pair):
    response = admin_client.post(
        "/admin/profiles/matchcandidate/",
        {"action": "approve_selected", "_selected_action": [family_pair.pk]},
        follow=True,
    )
    assert "Approved and merged 1 pair(s)." in [str(m) for m in response.context["messages"]]
    response = admin_client.post(
        "/admin/profiles/matchcandidate/?status=all",
        {"action": "reject_selected", "_selected_action": [family_pair.pk]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert "Rejected 0 pair(s)." in shown
    assert any("already decided" in m for m in shown)


def test_start_run_from_admin_queues_one_run_per_mode(admin_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post("/admin/profiles/matchingrun/start/incremental/")
        admin_client.post("/admin/profiles/matchingrun/start/incremental/")
        admin_client.post("/admin/profiles/matchingrun/start/full/")
    assert sorted(MatchingRun.objects.values_list("mode", "status")) == [
        ("full", RunStatus.QUEUED),
        ("incremental", RunStatus.QUEUED),
    ]
    assert admin_client.get("/admin/profiles/matchingrun/").status_code == 200
    assert admin_client.get("/admin/profiles/matchingrun/start/full/").status_code == 405


def test_unknown_mode_is_a_clear_error(admin_client):
    response = admin_client.post("/admin/profiles/matchingrun/start/sideways/", follow=True)
    assert any("Unknown matching mode" in str(m) for m in response.context["messages"])
    assert not MatchingRun.objects.exists()
