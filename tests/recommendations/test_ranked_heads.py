"""The heads of known shoppers' rankings computed by the refresh for many people at once
(``engine/ranked.py``, decision 0058): the chunked ranking is bit for bit each person's own request's,
and an answer served from a head is the live path's (items, scores, order, reasons), with the live
path ranking whoever the head cannot answer for (exclusions, a large k, people left out, an erasure)."""

from __future__ import annotations

import numpy as np
import pytest

from recommendations.engine import ranked as ranked_module
from recommendations.engine.bundle import ModelBundle, train_bundle
from recommendations.engine.hybrid import Hybrid
from tests.recommendations.test_engine import NOW, SMALL, catalog_of
from tests.recommendations.test_serving_fast_paths import browsing_shop


def _trained(**params) -> ModelBundle:
    data = browsing_shop(seed=11, people=160)
    fitted = train_bundle(data=data, catalog=catalog_of(list(data.items)), params={**SMALL, **params}, now=NOW)
    return ModelBundle.from_bytes(fitted.to_bytes())  # as served: read back from its stored form


@pytest.fixture(scope="module")
def trained():
    return _trained()


@pytest.fixture(scope="module")
def indexed():
    """The same shop with the ALS stage answered by the hnswlib index, as at catalog size."""
    return _trained(ann_min_items=0)


def _answers(bundle: ModelBundle, cases) -> list[list[tuple]]:
    return [
        [
            (r.item_id, r.score, r.recommender, r.reason)
            for r in bundle.recommend(user_id=u, k=k, exclude=e, context={"segments": []})
        ]
        for u, k, e in cases
    ]


def _cases(bundle: ModelBundle, seed: int = 0):
    """Every person, with exclusions of her own items and others, and several k."""
    rng = np.random.default_rng(seed)
    state = bundle.state
    out = []
    for row, user in enumerate(state.users):
        bought = state.purchases.indices[state.purchases.indptr[row] : state.purchases.indptr[row + 1]]
        exclude = {str(state.items[i]) for i in bought if rng.random() < 0.6}
        exclude |= {str(state.items[i]) for i in rng.choice(state.n_items, 2)}
        out.append((str(user), int(rng.choice([1, 3, 6, 10, 20])), exclude))
    return out


@pytest.mark.parametrize("name", ["trained", "indexed"])
@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_ranking_is_each_persons_own(request, name, chunk):
    bundle = request.getfixturevalue(name)
    hybrid = bundle.recommenders["hybrid"]
    assert hybrid.trained and (bundle.ann is not None) == (name == "indexed")
    rows = np.random.default_rng(chunk).permutation(bundle.state.n_users)
    for start in range(0, len(rows), chunk):
        part = np.sort(rows[start : start + chunk])
        c, proba = ranked_module.rank_many(hybrid, bundle.state, part, index=bundle.ann)
        for n, row in enumerate(part):
            alone, p = hybrid.rank(bundle.state, np.array([row]), index=bundle.ann)
            mine = c.row == n
            assert np.array_equal(alone.item, c.item[mine])
            assert np.array_equal(alone.source, c.source[mine])
            assert np.array_equal(alone.X, c.X[mine], equal_nan=True)
            assert np.array_equal(p, proba[mine])  # the scores bit for bit, not approximately


def test_the_compiled_tree_walk_is_the_numpy_one(trained):
    hybrid = trained.recommenders["hybrid"]
    c, _ = ranked_module.rank_many(hybrid, trained.state, np.arange(trained.state.n_users), index=None)
    X = c.X.copy()
    X[::5, 3] = np.nan  # missing values go where each node says
    assert np.array_equal(ranked_module._predict(hybrid, X), hybrid.predict(X))


@pytest.mark.parametrize("name", ["trained", "indexed"])
def test_answers_from_the_heads_are_the_live_answers(request, name):
    bundle = ModelBundle.from_bytes(request.getfixturevalue(name).to_bytes())
    cases = _cases(bundle)
    live = _answers(bundle, cases)
    ranked = ranked_module.precompute(bundle, size=6, chunk=16, threads=2, seconds=0)
    assert ranked is not None and (ranked.total >= 0).all()
    served = sum(
        ranked_module.head(ranked, bundle.user_index[u], k, bundle._banned(e)) is not None for u, k, e in cases
    )
    assert 0 < served < len(cases)  # some answered from the head, some (large k, exclusions) live
    assert _answers(bundle, cases) == live
    assert any(rec[3].get("type") in ("bought", "viewed") for recs in live for rec in recs)


def test_a_bounded_refresh_ranks_the_most_recently_active_and_the_rest_live(trained):
    bundle = ModelBundle.from_bytes(trained.to_bytes())
    cases = _cases(bundle, seed=1)
    live = _answers(bundle, cases)
    ranked = ranked_module.precompute(bundle, people=40, chunk=16, seconds=0)
    done = np.flatnonzero(ranked.total >= 0)
    assert len(done) == 40
    latest = np.sort(np.asarray(bundle.state.user_last))[::-1][39]
    assert (np.asarray(bundle.state.user_last)[done] >= latest).all()
    assert _answers(bundle, cases) == live


def test_heads_are_stored_with_the_people_and_an_erasure_retires_them(trained, tmp_path):
    from recommendations.engine.artifact import write

    bundle = ModelBundle.from_bytes(trained.to_bytes())
    ranked_module.precompute(bundle, seconds=0)
    item, _, shards = bundle.to_parts()
    write(str(tmp_path / "item.npz"), item)
    write(str(tmp_path / "people.npz"), ModelBundle.people_concat([blob for _, _, blob in shards]))
    mapped = ModelBundle.from_parts(str(tmp_path / "item.npz"), str(tmp_path / "people.npz"))
    hybrid = mapped.recommenders["hybrid"]
    assert ranked_module.ranked_of(hybrid, mapped.state.n_users) is not None
    # the shards hold people in their own order: the same person's head, row for row
    rows = np.array([bundle.user_index[str(u)] for u in mapped.state.users])
    before = bundle.recommenders["hybrid"].ranked
    assert np.array_equal(hybrid.ranked.items, before.items[rows])
    assert np.array_equal(hybrid.ranked.scores, before.scores[rows])
    assert np.array_equal(hybrid.ranked.total, before.total[rows])

    # an erasure rewrites the erased person's shard only: the people left no longer match the heads
    # (a neighbourhood lost a person), so every known shopper is ranked live again
    gone = str(bundle.state.users[3])
    erased_shards = [(n, *ModelBundle.shard_forget(blob, {gone})[:1]) for n, _, blob in shards]
    erased = ModelBundle.from_parts(item, [blob for _, blob in erased_shards])
    assert erased.state.n_users == bundle.state.n_users - 1
    assert ranked_module.ranked_of(erased.recommenders["hybrid"], erased.state.n_users) is None
    reference = ModelBundle.from_parts(item, [blob for _, blob in erased_shards])
    reference.heads_off()
    cases = _cases(erased, seed=2)
    assert _answers(erased, cases) == _answers(reference, cases)


def test_no_heads_for_a_model_whose_primary_is_not_the_hybrid(trained):
    bundle = ModelBundle.from_bytes(trained.to_bytes())
    bundle.params = {**bundle.params, "primary": "buy_again"}
    assert ranked_module.precompute(bundle) is None
    assert ranked_module.precompute(ModelBundle.from_bytes(trained.to_bytes()), size=0) is None


def test_heads_ranked_alongside_the_evaluation_are_the_heads_ranked_alone(trained):
    """The refresh ranks the heads on other threads while it evaluates the same model: the heads
    and the evaluation's rankings are what each gives alone."""
    from recommendations import services
    from recommendations.engine.evaluate import rank_users

    alone = ModelBundle.from_bytes(trained.to_bytes())
    expected = ranked_module.precompute(alone, seconds=0)
    users = [str(u) for u in alone.state.users]
    expected_ranking = rank_users(alone, users, 10)

    bundle = ModelBundle.from_bytes(trained.to_bytes())
    timings: dict = {}
    with services._heads_alongside(bundle, timings, enabled=True):
        ranking = [rank_users(bundle, users, 10) for _ in range(3)]
    ranked = bundle.recommenders["hybrid"].ranked
    assert ranked is not None and (ranked.total >= 0).all() and "rank_heads" in timings
    for name in ("items", "scores", "sources", "total"):
        assert np.array_equal(getattr(ranked, name), getattr(expected, name))
    assert all(r == expected_ranking for r in ranking)


def test_a_failing_refresh_step_waits_for_the_heads_and_raises_its_own_error(trained):
    from recommendations import services

    bundle = ModelBundle.from_bytes(trained.to_bytes())
    with pytest.raises(ZeroDivisionError), services._heads_alongside(bundle, {}, enabled=True):
        _ = 1 / 0
    # the heads' thread had ended when the error left the block: it does not run on after the refresh
    assert ranked_module.ranked_of(bundle.recommenders["hybrid"], bundle.state.n_users) is not None

    bundle.params = {**bundle.params, "ranked": {"size": "not a number"}}  # the heads' own error
    with pytest.raises(ValueError), services._heads_alongside(bundle, {}, enabled=True):
        pass


# --- the refresh and the API, on PostgreSQL ---------------------------------------------------------

HYBRID_PARAMS = {"als": {"iterations": 6, "factors": 8}}


@pytest.mark.parametrize("retrain", [False, True])
def test_the_refresh_keeps_heads_and_the_api_answers_as_it_does_live(shop_data, settings, retrain):
    from recommendations import services, serving
    from recommendations.models import ModelStatus
    from tests.recommendations.conftest import consent_to_training

    settings.RECS_TRAIN_PARAMS = HYBRID_PARAMS  # the default recipe: the hybrid answers
    settings.RECS_RETRAIN_ON_ALL_DATA = retrain
    consent_to_training()
    version = services.model_refresh_start(requested_by="tests", queue=False)
    version = services.model_refresh_execute(version_id=version.pk)
    assert version.status == ModelStatus.ACTIVE
    assert "rank_heads" in version.data_stats["seconds"]

    model, _ = serving.current()
    hybrid = model.bundle.recommenders[model.bundle.primary]
    assert isinstance(hybrid, Hybrid)
    ranked = ranked_module.ranked_of(hybrid, model.bundle.state.n_users)
    assert ranked is not None and (ranked.total >= 0).all()

    def answers():
        out = []
        for person in shop_data.people:
            for k in (2, 5, 10):
                answer = serving.recommend(serving.Query(profile_id=person, k=k))
                out.append([(i["sku"], i["score"], i["reason"], i["explanation"]) for i in answer.items])
        return out

    from_heads = answers()
    settings.RECS_RANKED_HEADS = False
    serving.runtime.reset()
    live = answers()
    model, _ = serving.current()
    assert getattr(model.bundle.recommenders[model.bundle.primary], "ranked", None) is None
    assert from_heads == live
    assert any(items for items in live)
