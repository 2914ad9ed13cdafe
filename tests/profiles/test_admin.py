"""The profiles admin: search by any identifier, the profile page, unmerge, merges, candidates, events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from profiles import services
from profiles.admin import CappedCountPaginator
from profiles.identity.merge import candidate_file, merge_refusal_record
from profiles.models import Event, Identifier, Merge, Profile
from tests.profiles.helpers import batch, call, writer

pytestmark = pytest.mark.django_db

PROFILES = "/admin/profiles/profile/"
MERGES = "/admin/profiles/merge/"
EVENTS = "/admin/profiles/event/"


@pytest.fixture
def client_api(write_key):
    return writer(write_key)


def identify(client_api, **payload) -> Profile:
    response = call(client_api, "identify", **payload)
    assert response.status_code == 200, response.content
    kind, value = ("user_id", payload["userId"]) if "userId" in payload else ("anonymous_id", payload["anonymousId"])
    return Identifier.objects.get(kind=kind, value=value).profile


@pytest.fixture
def ann(client_api) -> Profile:
    return identify(
        client_api,
        userId="u-ann",
        anonymousId="anon-ann",
        traits={"email": "ann@example.com", "phone": "07911 123456", "name": "Ann Lee", "loyalty_id": "L-77"},
        timestamp="2025-03-01T10:00:00Z",
    )


@pytest.fixture
def bob(client_api) -> Profile:
    return identify(
        client_api,
        userId="u-bob",
        traits={"email": "bob@example.com", "name": "Bob Stone"},
        timestamp="2025-03-02T10:00:00Z",
    )


def merge(winner: Profile, loser: Profile) -> Merge:
    return services.profile_merge(
        winner=Profile.objects.get(pk=winner.pk), loser=Profile.objects.get(pk=loser.pk), reason="manual"
    )


def listed(response) -> list:
    assert response.status_code == 200, response.content
    return [obj.pk for obj in response.context["cl"].result_list]


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def unmerge_url(profile: Profile, merge_row: Merge) -> str:
    return f"{PROFILES}{profile.pk}/unmerge/{merge_row.pk}/"


# --- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "term",
    [
        "ANN@Example.com",  # email, written differently
        " ann@example.com ",
        "+44 7911 123456",  # phone, another format of 07911 123456
        "07911123456",
        "u-ann",  # user id
        "anon-ann",  # anonymous id
        "L-77",  # a configured extra kind (CDP_EXTRA_IDENTIFIER_KINDS)
        "loyalty_id:L-77",
        "email:Ann@Example.com",
    ],
)
def test_search_finds_a_profile_by_any_identifier(admin_client, ann, bob, term):
    assert listed(admin_client.get(PROFILES, {"q": term})) == [ann.pk]


def test_search_finds_a_profile_by_id_or_its_prefix(admin_client, ann, bob):
    assert listed(admin_client.get(PROFILES, {"q": str(ann.pk)})) == [ann.pk]
    assert listed(admin_client.get(PROFILES, {"q": str(ann.pk)[:8]})) == [ann.pk]
    assert listed(admin_client.get(PROFILES, {"q": str(ann.pk).upper()})) == [ann.pk]


def test_search_matches_exactly_not_by_substring(admin_client, ann, bob):
    assert listed(admin_client.get(PROFILES, {"q": "example.com"})) == []
    assert listed(admin_client.get(PROFILES, {"q": "u-an"})) == []
    assert listed(admin_client.get(PROFILES, {"q": "nobody@example.com"})) == []


def test_search_of_a_merged_identifier_finds_the_survivor_and_an_old_id_finds_the_merged_profile(
    admin_client, ann, bob
):
    merge(ann, bob)
    assert listed(admin_client.get(PROFILES, {"q": "BOB@example.com"})) == [ann.pk]
    assert listed(admin_client.get(PROFILES, {"q": str(bob.pk)})) == [bob.pk]


@pytest.mark.parametrize("term", ["Ann Lee", "ann", "ANN  LEE", "lee"])
def test_search_finds_a_profile_by_any_part_of_its_name(admin_client, ann, bob, term):
    assert listed(admin_client.get(PROFILES, {"q": term})) == [ann.pk]


def test_search_by_name_reads_first_and_last_name_traits_in_either_spelling(admin_client, client_api, ann):
    carol = identify(client_api, userId="u-carol", traits={"firstName": "Carol", "lastName": "Danvers"})
    dan = identify(client_api, userId="u-dan", traits={"first_name": "Dan", "last_name": "Brown"})
    assert listed(admin_client.get(PROFILES, {"q": "carol danvers"})) == [carol.pk]
    assert listed(admin_client.get(PROFILES, {"q": "Dan Brown"})) == [dan.pk]
    assert set(listed(admin_client.get(PROFILES, {"q": "dan"}))) == {carol.pk, dan.pk}  # Danvers too


def test_search_by_name_needs_three_characters_and_is_answered_by_the_trigram_index(admin_client, ann):
    assert listed(admin_client.get(PROFILES, {"q": "an"})) == []
    from profiles.admin.search import profile_name_q

    queryset = Profile.objects.filter(profile_name_q("ann lee"))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = queryset.query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "profile_name_trgm" in plan


# --- list ----------------------------------------------------------------------------------------


def test_list_shows_live_profiles_by_default_with_a_status_filter(admin_client, ann, bob, client_api):
    carol = identify(client_api, userId="u-carol", traits={"email": "carol@example.com"})
    merge(ann, carol)
    assert set(listed(admin_client.get(PROFILES))) == {ann.pk, bob.pk}
    assert set(listed(admin_client.get(PROFILES, {"status": "live"}))) == {ann.pk, bob.pk}
    assert listed(admin_client.get(PROFILES, {"status": "merged"})) == [carol.pk]
    assert set(listed(admin_client.get(PROFILES, {"status": "all"}))) == {ann.pk, bob.pk, carol.pk}


def test_list_columns_show_traits_identifier_counts_and_computed_figures(admin_client, ann, client_api):
    call(client_api, "track", userId="u-ann", event="Order Completed", properties={"revenue": 1234.5})
    services.traits_refresh(profile_ids=[ann.pk])
    response = admin_client.get(PROFILES)
    row = response.context["cl"].result_list[0]
    assert (row.identifier_count, row.orders, row.revenue) == (5, 1, 1234.5)
    html = response.content.decode()
    for text in (str(ann.pk)[:8], "Ann Lee", "ann@example.com", "1,234.50", "live"):
        assert text in html


def test_list_queries_do_not_grow_with_the_number_of_profiles(admin_client, client_api):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(PROFILES).status_code == 200
        return len(captured)

    identify(client_api, userId="u-0", traits={"email": "p0@example.com"})
    few = queries()
    for i in range(1, 8):
        identify(client_api, userId=f"u-{i}", traits={"email": f"p{i}@example.com"})
    assert queries() == few


def test_other_lists_do_not_grow_queries_with_rows(admin_client, client_api):
    urls = [MERGES, EVENTS, "/admin/profiles/matchcandidate/?status=all"]

    def queries() -> list[int]:
        found = []
        for url in urls:
            with CaptureQueriesContext(connection) as captured:
                assert admin_client.get(url).status_code == 200
            found.append(len(captured))
        return found

    def add_pair(i: int) -> None:
        a = identify(client_api, userId=f"a-{i}", traits={"email": f"a{i}@example.com"})
        b = identify(client_api, userId=f"b-{i}", traits={"email": f"b{i}@example.com"})
        candidate_file(a=a, b=b, reason="fuzzy", evidence={}, score=0.5)
        merge(a, b)

    add_pair(0)
    few = queries()
    for i in range(1, 5):
        add_pair(i)
    assert queries() == few


def test_list_counts_at_most_the_cap(admin_client, client_api, monkeypatch):
    for i in range(4):
        identify(client_api, userId=f"u-{i}")
    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    response = admin_client.get(PROFILES)
    assert response.context["cl"].result_count == 2
    assert "2+ profiles" in " ".join(response.content.decode().split())


# --- profile page --------------------------------------------------------------------------------


def test_profile_page_shows_identifiers_timeline_and_computed_traits(admin_client, ann, client_api):
    batch(
        client_api,
        {"type": "track", "userId": "u-ann", "event": "Product Viewed", "properties": {"category": "shoes"}},
        {
            "type": "track",
            "userId": "u-ann",
            "event": "Order Completed",
            "properties": {"revenue": 99.5, "products": [{"sku": "S1", "price": 99.5, "category": "shoes"}]},
            "context": {"device": {"type": "mobile"}},
        },
        {"type": "page", "userId": "u-ann", "name": "Home", "properties": {"path": "/"}},
    )
    services.traits_refresh(profile_ids=[ann.pk])

    response = admin_client.get(f"{PROFILES}{ann.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    # identifiers inline (read-only)
    for value in ("ann@example.com", "+447911123456", "u-ann", "anon-ann", "L-77"):
        assert value in html
    assert response.context["inline_admin_formsets"][0].formset.queryset.count() == 5
    # traits and computed traits as tables
    assert '<table class="profile-values">' in html
    assert "Ann Lee" in html
    assert '<th scope="row">orders</th><td>1</td>' in html
    assert '<th scope="row">category_affinity.purchases</th><td>shoes: 1.0</td>' in html
    # the timeline, newest first
    timeline = html[html.index('id="profile-timeline"') :]
    for text in ("Order Completed", "Product Viewed", "Home", "revenue: 99.5, products: [1]", "category: shoes"):
        assert text in timeline
    assert f"{EVENTS}?profile={ann.pk}" in html
    # read-only: no save button, no editable inputs for data
    assert 'name="_save"' not in html
    assert 'name="traits"' not in html


def test_timeline_shows_the_fifty_most_recent_events(admin_client, ann, client_api):
    events = [
        {"type": "track", "userId": "u-ann", "event": f"E{i:02d}", "timestamp": f"2025-04-01T10:{i:02d}:00Z"}
        for i in range(55)
    ]
    batch(client_api, *events)
    response = admin_client.get(f"{PROFILES}{ann.pk}/change/")
    timeline = response.content.decode().split('id="profile-timeline"')[1].split('id="profile-merges"')[0]
    assert "E54" in timeline and "E05" in timeline
    assert "E04" not in timeline
    assert timeline.index("E54") < timeline.index("E05")


def test_profile_page_shows_merge_history_with_an_unmerge_button(admin_client, ann, bob):
    merge_row = merge(ann, bob)
    response = admin_client.get(f"{PROFILES}{ann.pk}/change/")
    html = response.content.decode()
    history = html[html.index('id="profile-merges"') :]
    assert "manual" in history and "winner" in history and "bob@example.com" in history
    assert f'formaction="{unmerge_url(ann, merge_row)}"' in history
    assert 'name="csrfmiddlewaretoken"' in html


def test_merged_away_profile_page_links_to_the_survivor(admin_client, ann, bob):
    merge(ann, bob)
    response = admin_client.get(f"{PROFILES}{bob.pk}/change/")
    assert response.context["merged_survivor"].pk == ann.pk
    html = response.content.decode()
    assert "This profile was merged away" in html
    assert f'href="{PROFILES}{ann.pk}/change/"' in html
    assert "merged away" in html[html.index('id="profile-merges"') :]


def test_profile_admin_does_not_add_change_or_delete(admin_client, ann):
    assert admin_client.get(f"{PROFILES}add/").status_code == 403
    assert admin_client.post(f"{PROFILES}{ann.pk}/change/", {"traits": "{}"}).status_code == 403
    assert admin_client.get(f"{PROFILES}{ann.pk}/delete/").status_code == 403


# --- unmerge -------------------------------------------------------------------------------------


def test_unmerge_button_restores_both_profiles(admin_client, ann, bob):
    merge_row = merge(ann, bob)
    assert set(Identifier.objects.filter(profile=ann).values_list("value", flat=True)) >= {"bob@example.com"}

    response = admin_client.post(unmerge_url(ann, merge_row), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == f"{PROFILES}{ann.pk}/change/"
    bob.refresh_from_db()
    assert bob.merged_into is None
    assert bob.traits["email"] == "bob@example.com"
    assert set(Identifier.objects.filter(profile=bob).values_list("kind", "value")) == {
        ("user_id", "u-bob"),
        ("email", "bob@example.com"),
    }
    assert not Identifier.objects.filter(profile=ann, value__in=["u-bob", "bob@example.com"]).exists()
    merge_row.refresh_from_db()
    assert merge_row.undone_at is not None
    assert merge_row.undone_by == "admin"
    assert any(f"Merge #{merge_row.pk} undone" in m for m in texts(response))
    assert f'formaction="{unmerge_url(ann, merge_row)}"' not in response.content.decode()


def test_unmerge_from_the_merged_away_profile_page(admin_client, ann, bob):
    merge_row = merge(ann, bob)
    response = admin_client.post(unmerge_url(bob, merge_row), follow=True)
    assert response.redirect_chain[-1][0] == f"{PROFILES}{bob.pk}/change/"
    assert Profile.objects.get(pk=bob.pk).merged_into_id is None


def test_unmerging_twice_shows_an_error_message_not_a_500(admin_client, ann, bob):
    merge_row = merge(ann, bob)
    admin_client.post(unmerge_url(ann, merge_row), follow=True)

    response = admin_client.post(unmerge_url(ann, merge_row), follow=True)

    assert response.status_code == 200
    assert texts(response) == [f"Merge #{merge_row.pk} was not undone: This merge was already undone."]


def test_unmerging_a_refused_merge_shows_an_error_message(admin_client, ann, bob):
    refused = merge_refusal_record(a=ann, b=bob, reason="identifier:email", guard={"guard": "test"}, evidence={})
    response = admin_client.post(unmerge_url(ann, refused), follow=True)
    assert response.status_code == 200
    assert "was not undone: Only a merge that happened can be undone" in texts(response)[0]


def test_unmerge_of_a_merge_of_other_profiles_is_refused(admin_client, ann, bob, client_api):
    carol = identify(client_api, userId="u-carol")
    merge_row = merge(ann, bob)
    response = admin_client.post(unmerge_url(carol, merge_row), follow=True)
    assert texts(response) == [f"Merge #{merge_row.pk} does not involve this profile."]
    assert Merge.objects.get(pk=merge_row.pk).undone_at is None


def test_unmerge_needs_post_csrf_and_the_change_merge_permission(admin_client, ann, bob):
    merge_row = merge(ann, bob)
    url = unmerge_url(ann, merge_row)
    assert admin_client.get(url).status_code == 405

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(get_user_model().objects.get(username="admin"))
    assert strict.post(url).status_code == 403

    staff = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_profile"))
    viewer = Client()
    viewer.force_login(staff)
    page = viewer.get(f"{PROFILES}{ann.pk}/change/")
    assert page.status_code == 200
    assert "formaction" not in page.content.decode()
    assert viewer.post(url).status_code == 403
    assert Merge.objects.get(pk=merge_row.pk).undone_at is None

    staff.user_permissions.add(Permission.objects.get(codename="change_merge"))
    viewer.force_login(get_user_model().objects.get(pk=staff.pk))
    assert viewer.post(url).status_code == 302
    assert Merge.objects.get(pk=merge_row.pk).undone_by == "viewer"


# --- merges --------------------------------------------------------------------------------------


def test_merge_admin_lists_and_shows_merges_read_only(admin_client, ann, bob):
    merge_row = merge(ann, bob)
    response = admin_client.get(MERGES)
    assert listed(response) == [merge_row.pk]
    html = response.content.decode()
    assert f'href="{PROFILES}{ann.pk}/change/"' in html and f'href="{PROFILES}{bob.pk}/change/"' in html
    assert listed(admin_client.get(MERGES, {"undone": "yes"})) == []
    assert listed(admin_client.get(MERGES, {"undone": "no", "_facets": "True"})) == [merge_row.pk]
    assert listed(admin_client.get(MERGES, {"q": "BOB@example.com"})) == [merge_row.pk]  # now ann's, the winner
    assert listed(admin_client.get(MERGES, {"q": "nobody@example.com"})) == []
    assert listed(admin_client.get(MERGES, {"q": str(bob.pk)})) == [merge_row.pk]
    page = admin_client.get(f"{MERGES}{merge_row.pk}/change/")
    assert page.status_code == 200
    assert "2 identifier(s), 1 event(s)" in page.content.decode()
    assert admin_client.get(f"{MERGES}add/").status_code == 403
    assert admin_client.get(f"{MERGES}{merge_row.pk}/delete/").status_code == 403


def test_merge_admin_bulk_undo_reports_how_many_were_undone_and_which_failed(admin_client, client_api, ann, bob):
    carol = identify(client_api, userId="u-carol")
    dave = identify(client_api, userId="u-dave")
    first, second = merge(ann, bob), merge(carol, dave)
    services.profile_unmerge(merge=second)
    third = merge(carol, dave)

    response = admin_client.post(
        MERGES, {"action": "undo_selected", "_selected_action": [first.pk, second.pk, third.pk]}, follow=True
    )

    assert response.status_code == 200
    assert texts(response) == [
        "Undid 2 merge(s).",
        f"1 merge(s) could not be undone: #{second.pk} (This merge was already undone.)",
    ]
    assert Profile.objects.filter(pk__in=[bob.pk, dave.pk], merged_into__isnull=True).count() == 2
    assert Merge.objects.filter(undone_at__isnull=True).count() == 0


def test_merge_admin_offers_no_undo_action_without_the_permission(ann, bob):
    merge_row = merge(ann, bob)
    staff = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_merge"))
    viewer = Client()
    viewer.force_login(staff)
    assert viewer.get(MERGES).status_code == 200
    viewer.post(MERGES, {"action": "undo_selected", "_selected_action": [merge_row.pk]})
    assert Merge.objects.get(pk=merge_row.pk).undone_at is None


# --- review queue --------------------------------------------------------------------------------


def test_match_candidate_page_compares_the_traits_of_both_profiles(admin_client, ann, bob):
    candidate = candidate_file(a=ann, b=bob, reason="fuzzy:name", evidence={"name": 0.7}, score=0.82)
    Profile.objects.filter(pk=bob.pk).update(traits={**bob.traits, "name": "ann lee ", "city": "Leeds"})

    assert listed(admin_client.get("/admin/profiles/matchcandidate/")) == [candidate.pk]
    assert listed(admin_client.get("/admin/profiles/matchcandidate/", {"status": "rejected"})) == []
    faceted = admin_client.get("/admin/profiles/matchcandidate/", {"_facets": "True"})
    assert "Pending (1)" in faceted.content.decode()
    response = admin_client.get(f"/admin/profiles/matchcandidate/{candidate.pk}/change/")

    assert response.status_code == 200
    table = response.content.decode().split('class="candidate-comparison"')[1].split("</table>")[0]
    rows = {row.split("</th>")[0]: row.split("</tr>")[0] for row in table.split('<th scope="row">')[1:]}
    a_is_ann = candidate.profile_a_id == ann.pk
    assert "<strong>different</strong>" in rows["email"]
    assert rows["name"].endswith("<td>same</td>")
    assert ("only B" if a_is_ann else "only A") in rows["city"]
    assert ("only A" if a_is_ann else "only B") in rows["phone"]
    assert admin_client.get("/admin/profiles/matchcandidate/add/").status_code == 403


# --- events --------------------------------------------------------------------------------------


def test_event_admin_lists_no_events(admin_client):
    response = admin_client.get(EVENTS)
    assert listed(response) == []
    assert response.context["event_date_nav"] == {"show": False}


def test_event_admin_lists_filters_and_shows_events(admin_client, ann, bob, client_api):
    batch(
        client_api,
        {"type": "track", "userId": "u-ann", "event": "Order Completed", "timestamp": "2024-05-03T10:00:00Z"},
        {"type": "page", "userId": "u-bob", "name": "Home", "timestamp": "2025-03-02T11:00:00Z"},
    )
    everything = listed(admin_client.get(EVENTS))
    assert len(everything) == Event.objects.count() == 4
    assert everything == sorted(everything, reverse=True)  # arrival order, newest first

    tracks = listed(admin_client.get(EVENTS, {"type__exact": "track"}))
    assert [Event.objects.get(pk=pk).name for pk in tracks] == ["Order Completed"]
    in_may = listed(admin_client.get(EVENTS, {"occurred_at__year": "2024", "occurred_at__month": "5"}))
    assert [Event.objects.get(pk=pk).name for pk in in_may] == ["Order Completed"]
    of_bob = listed(admin_client.get(EVENTS, {"profile": str(bob.pk)}))
    assert {Event.objects.get(pk=pk).profile_id for pk in of_bob} == {bob.pk}

    response = admin_client.get(EVENTS)
    nav = response.context["event_date_nav"]
    assert [c["title"] for c in nav["choices"]] == ["2024", "2025"]
    year = admin_client.get(EVENTS, {"occurred_at__year": "2025"}).context["event_date_nav"]
    assert [c["title"] for c in year["choices"]] == ["March 2025"]  # only months with events
    month = admin_client.get(EVENTS, {"occurred_at__year": "2025", "occurred_at__month": "3"})
    assert [c["title"] for c in month.context["event_date_nav"]["choices"]] == ["March 1", "March 2"]
    empty = admin_client.get(EVENTS, {"occurred_at__year": "2024", "occurred_at__month": "2"})
    assert empty.context["event_date_nav"]["choices"] == []
    tracks_2025 = admin_client.get(EVENTS, {"occurred_at__year": "2025", "type__exact": "track"})
    assert tracks_2025.context["event_date_nav"]["choices"] == []  # the list's filters apply too

    event = Event.objects.get(name="Order Completed")
    page = admin_client.get(f"{EVENTS}{event.pk}/change/")
    assert page.status_code == 200
    assert "Order Completed" in page.content.decode()


def test_event_admin_never_counts_the_whole_table(admin_client, ann, client_api, monkeypatch):
    batch(client_api, *[{"type": "track", "userId": "u-ann", "event": f"E{i}"} for i in range(4)])
    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(EVENTS)
    assert response.context["cl"].result_count == 3
    assert response.context["cl"].full_result_count is None
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"].upper() and "profiles_event" in q["sql"]]
    assert counts and all("LIMIT 4" in sql for sql in counts)
    assert not any("DISTINCT" in q["sql"].upper() and "profiles_event" in q["sql"] for q in captured)


def test_event_admin_is_read_only(admin_client, ann):
    event = Event.objects.get()
    assert admin_client.get(f"{EVENTS}add/").status_code == 403
    assert admin_client.post(f"{EVENTS}{event.pk}/change/", {"name": "x"}).status_code == 403
    assert admin_client.get(f"{EVENTS}{event.pk}/delete/").status_code == 403


def test_profile_seen_times_bound_the_event_dates(ann):
    """The calendar navigation relies on this: every event lies within its profile's seen times."""
    event = Event.objects.get(profile=ann)
    assert ann.first_seen_at <= event.occurred_at <= ann.last_seen_at
    assert event.occurred_at == datetime(2025, 3, 1, 10, tzinfo=UTC)
