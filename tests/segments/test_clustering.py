"""Clustering: features from real computed traits, the k-selection rule, descriptions, runs that
propose segments, the admin's decisions, and later runs keeping accepted segments current."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from sklearn.datasets import make_blobs

from profiles import services as profile_services
from profiles.models import Profile
from segments.clustering.describe import describe
from segments.clustering.engine import (
    Candidate,
    ClusteringError,
    ClusteringParams,
    choose_k,
    cluster,
    run_algorithm,
    stability,
)
from segments.clustering.features import ClusterModel, FeatureFrame, FeatureTransform, all_features
from segments.clustering.selectors import clustering_features_extract
from segments.clustering.services import (
    ClusterDecisionError,
    cluster_segment_accept,
    cluster_segment_dismiss,
    clustering_run_execute,
    clustering_run_start,
)
from segments.models import ClusteringRun, Segment, SegmentMembership, SegmentStatus
from segments.selectors import profile_segments, segment_member_ids
from tests.profiles.helpers import batch, writer
from tests.segments.clustering_shop import shop

FAST = {"k_min": 3, "k_max": 6, "bootstrap": 3, "algorithms": ["kmeans", "gmm", "agglomerative"]}


def blobs(n: int = 900, centers: int = 6, seed: int = 3) -> np.ndarray:
    x, _ = make_blobs(
        n_samples=n, centers=centers, n_features=4, cluster_std=1.0, center_box=(-20, 20), random_state=seed
    )
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


# --- features from computed traits ---------------------------------------------------------------


@pytest.mark.django_db
def test_features_come_from_the_computed_traits_of_ingested_events(write_key):
    client = writer(write_key)
    now = timezone.now()
    ordered_at = now - timedelta(days=10)
    mobile = {"device": {"type": "ios", "model": "iPhone15,2"}}
    response = batch(
        client,
        {
            "type": "track",
            "userId": "ann",
            "event": "Product Viewed",
            "properties": {"category": "garden"},
            "timestamp": (ordered_at - timedelta(minutes=5)).isoformat(),
            "context": mobile,
        },
        {
            "type": "track",
            "userId": "ann",
            "event": "Order Completed",
            "properties": {"revenue": 120, "products": [{"category": "garden", "price": 120, "quantity": 1}]},
            "timestamp": ordered_at.isoformat(),
            "context": mobile,
        },
        {"type": "page", "userId": "bob", "name": "Home", "timestamp": (now - timedelta(days=3)).isoformat()},
    )
    assert response.status_code == 200
    profile_services.pending_process()
    ann = Profile.objects.get(identifiers__value="ann")
    bob = Profile.objects.get(identifiers__value="bob")
    merged = Profile.objects.create(first_seen_at=now, last_seen_at=now, merged_into=ann, computed={"frequency": 9})

    frame = clustering_features_extract(now=now)

    assert sorted(frame.ids.tolist()) == sorted([str(ann.pk), str(bob.pk)])  # the merged-away one is not live
    assert str(merged.pk) not in frame.ids
    assert frame.categories == ["garden"]
    row = dict(zip(frame.names, frame.values[frame.ids.tolist().index(str(ann.pk))], strict=True))
    assert row["frequency"] == 1 and row["monetary"] == 120 and row["avg_order_value"] == 120
    assert row["recency_days"] == 10 and row["orders_90d"] == 1 and row["revenue_365d"] == 120
    assert row["category:garden"] == 1.0  # bought and viewed only garden
    assert (row["device:mobile"], row["device:desktop"], row["device:tablet"]) == (1, 0, 0)
    assert row["browse_recency_days"] == pytest.approx(10, abs=0.01)
    assert row["engagement_score"] == ann.computed["engagement_score"] > 0
    bob_row = dict(zip(frame.names, frame.values[frame.ids.tolist().index(str(bob.pk))], strict=True))
    assert math.isnan(bob_row["recency_days"])  # never ordered: missing, imputed by the transform
    assert bob_row["frequency"] == 0 and bob_row["category:garden"] != bob_row["category:garden"]  # NaN: no affinity


def test_transform_fills_logs_scales_and_drops_constant_columns():
    features = all_features(["a", "b"])
    values = np.full((4, len(features)), np.nan)
    names = [f.name for f in features]
    values[:, names.index("recency_days")] = [1, 3, np.nan, 7]
    values[:, names.index("monetary")] = [0, 10, 100, 1000]
    values[:, names.index("frequency")] = [2, 2, 2, 2]  # constant: dropped
    values[:, names.index("category:a")] = [1, 0, 0.5, np.nan]
    values[:, names.index("category:b")] = [0, 1, 0.5, np.nan]
    frame = FeatureFrame(ids=np.array(list("wxyz"), dtype=object), features=features, values=values)

    transform = FeatureTransform.fit(frame)
    x = transform.transform(frame)

    assert transform.names == ["recency_days", "monetary", "category:a", "category:b"]
    assert transform.fill[0] == 7  # missing recency = the most lapsed
    assert np.allclose(transform.standardise(frame).mean(axis=0), 0, atol=1e-6)
    assert np.allclose(transform.standardise(frame).std(axis=0), 1, atol=1e-6)
    monetary = transform.standardise(frame)[:, 1]
    expected = np.log1p([0, 10, 100, 1000])
    assert np.allclose(monetary, (expected - expected.mean()) / expected.std(), atol=1e-6)
    assert np.allclose(transform.weight, [1, 1, 1, 1])  # two category columns weigh 2 features: sqrt(2/2)
    assert x.dtype == np.float32 and x.shape == (4, 4)
    restored = ClusterModel.from_bytes(
        ClusterModel(transform=transform, centres=x[:2], categories=["a", "b"], algorithm="kmeans").to_bytes()
    )
    assert restored.transform.names == transform.names and np.array_equal(restored.centres, x[:2])
    assert restored.assign(frame).tolist()[:2] == [0, 1]


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch_kmeans", "gmm", "agglomerative"])
def test_six_separated_groups_give_k_six_within_the_range(algorithm):
    result = run_algorithm(algorithm, blobs(), ClusteringParams(bootstrap=3))
    assert result.k == 6
    assert result.stability > 0.9 and result.silhouette > 0.6
    assert len(np.unique(result.labels)) == 6 and result.centres.shape == (6, 4)
    assert [c.k for c in result.candidates] == list(range(4, 13))


def test_a_cluster_below_the_minimum_share_disqualifies_its_k():
    x, _ = make_blobs(n_samples=[300, 300, 300, 300, 300, 10], n_features=3, cluster_std=0.5, random_state=4)
    x[-10:] += 60  # a tiny, far group (0.7 %): every k gives it a cluster of its own
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)

    strict = run_algorithm("kmeans", x, ClusteringParams(k_min=4, k_max=8, bootstrap=3, min_share=0.02))
    lenient = run_algorithm("kmeans", x, ClusteringParams(k_min=4, k_max=8, bootstrap=3, min_share=0.005))

    assert strict.k is None and "2%" in strict.note
    assert not any(c.eligible for c in strict.candidates)
    assert lenient.k == 6


def test_choose_k_takes_the_largest_k_nearly_as_good_as_the_best():
    def cand(k, score, eligible=True):
        return Candidate(k, score, 1.0, 0.1, eligible, score)

    candidates = [cand(4, 0.50), cand(5, 0.46), cand(6, 0.44), cand(7, 0.60, eligible=False), cand(8, 0.30)]
    assert choose_k(candidates, tolerance=0.10).k == 5  # 0.46 >= 0.9 x 0.50; 0.44 is not; 7 is too small a share
    assert choose_k(candidates, tolerance=0.15).k == 6
    assert choose_k(candidates, tolerance=0.0).k == 4
    assert choose_k([cand(4, 0.5, eligible=False)], tolerance=0.1) is None


def test_stability_is_the_mean_ari_on_common_members():
    same = (np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]))
    renamed = (np.array([3, 2, 1, 0, 9]), np.array([5, 5, 7, 7, 7]))  # same partition on 0..3, labels renamed
    crossed = (np.array([0, 1, 2, 3]), np.array([0, 1, 0, 1]))
    assert stability([same, renamed]) == pytest.approx(1.0)
    assert stability([same, crossed]) < 0


def test_bad_parameters_and_too_few_profiles_are_refused():
    with pytest.raises(ClusteringError, match="k_min"):
        ClusteringParams.from_dict({"k_min": 8, "k_max": 5})
    with pytest.raises(ClusteringError, match="Unknown algorithm"):
        ClusteringParams.from_dict({"algorithms": ["dbscan"]})
    with pytest.raises(ClusteringError, match="Unknown clustering parameter"):
        ClusteringParams.from_dict({"kk": 3})
    with pytest.raises(ClusteringError, match="Too few profiles"):
        cluster(blobs(n=30), ClusteringParams())


def test_minibatch_replaces_kmeans_for_large_populations():
    params = ClusteringParams(minibatch_above=1000)
    assert params.effective_algorithms(999) == ["kmeans", "gmm", "agglomerative"]
    assert params.effective_algorithms(1001) == ["minibatch_kmeans", "gmm", "agglomerative"]


# --- descriptions --------------------------------------------------------------------------------


def test_a_cluster_is_described_from_its_centre_relative_to_the_population():
    words = describe(
        {"monetary": 1.4, "revenue_365d": 1.3, "frequency": 1.1, "recency_days": -0.9, "tenure_days": 0.1},
        {"home_decor": (0.6, 0.2), "toys": (0.2, 0.25)},
        {"mobile": 0.75, "desktop": 0.25},
    )
    assert words == "high spend, frequent, recent; prefers home decor; mostly mobile"
    assert describe({"monetary": 0.2}, {}, {"mobile": 0.5}) == "close to the average customer"
    assert describe({"recency_days": 1.2, "frequency": -0.7}, {}, {}) == "lapsed, rarely buy"


# --- runs, proposals, decisions ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_proposes_one_segment_per_kind_of_customer_with_its_members():
    now = timezone.now()
    groups = shop(now=now, per_group=20)
    run = clustering_run_start(requested_by="tester", params=FAST)
    assert run.status == "queued" and run.params["k_min"] == 3

    run = clustering_run_execute(run_id=run.pk, now=now)

    assert run.status == "done", run.error
    assert (run.progress, run.progress_message, run.population) == (1.0, "done", 80)
    assert run.chosen["k"] == 4
    assert {a["algorithm"] for a in run.report["algorithms"]} == {"kmeans", "gmm", "agglomerative"}
    for figures in run.report["algorithms"]:
        assert {"k", "silhouette", "davies_bouldin", "calinski_harabasz", "stability", "seconds"} <= set(figures)
    assert "category:home decor" in run.report["features"] and "device:tablet" in run.report["features"]
    assert all(isinstance(v, (int, float, str, list, dict, type(None))) for v in run.report.values())
    proposals = Segment.objects.filter(clustering_run=run).order_by("cluster_label")
    assert proposals.count() == 4 and {s.status for s in proposals} == {"proposed"}
    assert {s.kind for s in proposals} == {"cluster"}
    by_members = {frozenset(segment_member_ids(segment=s)): s for s in proposals}
    assert set(by_members) == {frozenset(ids) for ids in groups.values()}  # each kind of customer is one cluster
    big = by_members[frozenset(groups["big"])]
    assert big.size == 20 and big.cluster_profile["size"] == 20
    assert "high spend" in big.cluster_profile["description"] and "prefers home decor" in big.name
    assert "mostly desktop" in big.cluster_profile["description"]
    lapsed = by_members[frozenset(groups["lapsed"])]
    assert "lapsed" in lapsed.cluster_profile["description"]
    assert lapsed.cluster_profile["median"]["frequency"] == 1
    assert not profile_segments(profile_id=groups["big"][0]).exists()  # proposed, not active yet
    assert ClusteringRun.objects.get(pk=run.pk).model  # kept to assign profiles later
    assert clustering_run_execute(run_id=run.pk).status == "done"  # running it again does nothing
    assert Segment.objects.filter(clustering_run=run).count() == 4


@pytest.mark.django_db
def test_accepted_segments_stay_current_and_newer_proposals_supersede_the_rest():
    now = timezone.now()
    groups = shop(now=now, per_group=20)
    first = clustering_run_execute(run_id=clustering_run_start(params=FAST).pk, now=now)
    segments = {frozenset(segment_member_ids(segment=s)): s for s in Segment.objects.filter(clustering_run=first)}
    big = segments[frozenset(groups["big"])]
    lapsed = segments[frozenset(groups["lapsed"])]

    cluster_segment_accept(segment=big, actor="ada")
    cluster_segment_dismiss(segment=lapsed, actor="ada")
    with pytest.raises(ClusterDecisionError, match="already decided"):
        cluster_segment_accept(segment=lapsed, actor="ada")

    big.refresh_from_db()
    lapsed.refresh_from_db()
    assert big.status == SegmentStatus.ACTIVE and big.cluster_profile["decision"]["by"] == "ada"
    assert lapsed.status == SegmentStatus.DISMISSED and lapsed.size == 0
    assert list(profile_segments(profile_id=groups["big"][0])) == [big]

    # a new big spender arrives; the weekly run proposes again
    later = now + timedelta(hours=1)
    newcomer = shop(now=later, per_group=1, seed=9)["big"][0]
    second = clustering_run_execute(run_id=clustering_run_start(params=FAST).pk, now=later)

    assert second.status == "done", second.error
    big.refresh_from_db()
    assert big.status == SegmentStatus.ACTIVE  # accepted: kept
    assert newcomer in segment_member_ids(segment=big)  # nearest to its stored centre
    assert set(groups["big"]) <= set(segment_member_ids(segment=big))
    old_proposals = Segment.objects.filter(clustering_run=first).exclude(pk__in=[big.pk, lapsed.pk])
    assert {s.status for s in old_proposals} == {SegmentStatus.DISMISSED}  # superseded by the newer run
    assert {s.cluster_profile["decision"]["status"] for s in old_proposals} == {"superseded"}
    assert not SegmentMembership.objects.filter(segment__in=old_proposals, exited_at__isnull=True).exists()
    assert Segment.objects.filter(clustering_run=second, status=SegmentStatus.PROPOSED).count() == second.chosen["k"]


@pytest.mark.django_db
def test_a_run_without_enough_profiles_fails_with_the_reason():
    shop(now=timezone.now(), per_group=3)
    run = clustering_run_execute(run_id=clustering_run_start(params=FAST).pk)
    assert run.status == "failed" and "Too few profiles" in run.error
    assert run.finished_at is not None and not Segment.objects.exists()


@pytest.mark.django_db
def test_starting_refuses_bad_params_and_does_not_start_twice():
    with pytest.raises(ClusteringError):
        clustering_run_start(params={"min_share": 0.5})
    first = clustering_run_start()
    assert clustering_run_start() == first
    assert ClusteringRun.objects.count() == 1


# --- admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_runs_clustering_shows_the_report_and_takes_decisions(admin_client, django_capture_on_commit_callbacks):
    now = timezone.now()
    shop(now=now, per_group=20)
    changelist = reverse("admin:segments_clusteringrun_changelist")
    assert "Run clustering now" in admin_client.get(changelist).content.decode()

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post(reverse("admin:segments_clusteringrun_start"))
    assert response.status_code == 302 and len(queued) == 1  # the task goes out on commit
    run = ClusteringRun.objects.get()
    assert run.requested_by == "admin" and run.status == "queued"
    ClusteringRun.objects.filter(pk=run.pk).update(params={**run.params, **FAST})
    clustering_run_execute(run_id=run.pk, now=now)

    page = admin_client.get(reverse("admin:segments_clusteringrun_change", args=[run.pk])).content.decode()
    for heading in ("silhouette", "Davies-Bouldin", "Calinski-Harabasz", "stability", "seconds", "K-Means (chosen)"):
        assert heading in page
    assert page.count(">Accept</button>") == 4 and "finished" in page

    segment = Segment.objects.filter(clustering_run=run).first()
    response = admin_client.post(reverse("admin:segments_clusteringrun_decide", args=[segment.pk, "accept"]))
    assert response.status_code == 302
    segment.refresh_from_db()
    assert segment.status == "active" and segment.cluster_profile["decision"]["by"] == "admin"
    other = Segment.objects.filter(clustering_run=run, status="proposed").first()
    admin_client.post(reverse("admin:segments_clusteringrun_decide", args=[other.pk, "dismiss"]))
    other.refresh_from_db()
    assert other.status == "dismissed"
    assert admin_client.get(reverse("admin:segments_clusteringrun_start")).status_code == 405


@pytest.mark.django_db
def test_the_weekly_task_and_run_now_execute_in_process():
    from segments.tasks import ml_clustering_run

    shop(now=timezone.now(), per_group=15)
    run_id = ml_clustering_run()
    weekly = ClusteringRun.objects.get(pk=run_id)
    assert weekly.requested_by == "schedule" and weekly.status == "done", weekly.error
    assert 4 <= weekly.chosen["k"] <= 12
    assert ml_clustering_run(run_id) == run_id  # again: nothing happens

    from segments.clustering.services import clustering_run_now

    now_run = clustering_run_now(requested_by="demo", params=FAST)
    assert now_run.status == "done" and now_run.pk != run_id
    assert Segment.objects.filter(clustering_run=weekly, status="dismissed").count() == weekly.chosen["k"]


@pytest.mark.django_db
def test_admin_pages_of_queued_and_failed_runs_render(admin_client):
    queued = clustering_run_start(params=FAST)
    failed = ClusteringRun.objects.create(status="failed", error="ClusteringError: Too few profiles to cluster: 3")
    for run in (queued, failed):
        page = admin_client.get(reverse("admin:segments_clusteringrun_change", args=[run.pk]))
        assert page.status_code == 200
    listing = admin_client.get(reverse("admin:segments_clusteringrun_changelist")).content.decode()
    assert "Too few profiles to cluster" in listing and "queued" in listing


@pytest.mark.django_db
def test_the_nightly_assignment_brings_new_profiles_into_accepted_cluster_segments():
    from segments.tasks import ml_cluster_segments_assign

    now = timezone.now()
    groups = shop(now=now, per_group=20)
    run = clustering_run_execute(run_id=clustering_run_start(params=FAST).pk, now=now)
    regulars = Segment.objects.get(clustering_run=run, memberships__profile_id=groups["regulars"][0])
    cluster_segment_accept(segment=regulars, actor="ada")
    assert ml_cluster_segments_assign() == 1  # only accepted segments are kept current

    newcomer = shop(now=now, per_group=1, seed=11)["regulars"][0]
    assert newcomer not in segment_member_ids(segment=regulars)
    assert ml_cluster_segments_assign() == 1
    assert newcomer in segment_member_ids(segment=regulars)
    assert set(groups["regulars"]) <= set(segment_member_ids(segment=regulars))
    assert not SegmentMembership.objects.filter(
        segment__clustering_run=run, segment__status="proposed", profile_id=newcomer
    ).exists()  # proposals are a snapshot of their run
