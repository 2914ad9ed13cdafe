"""The engine's recommenders on small synthetic shops whose structure is planted and known."""

from __future__ import annotations

import numpy as np
import pytest

from recommendations.engine.bundle import ModelBundle, Rec, train_bundle
from recommendations.engine.data import PURCHASE, VIEW, Catalog, Interactions
from recommendations.engine.evaluate import evaluate_bundle, holdout_split
from recommendations.engine.params import DEFAULT_PARAMS

DAY = 86400.0
NOW = 400 * DAY
GROUPS = {
    "coffee": ["espresso beans", "filter coffee", "coffee grinder", "moka pot", "coffee mug"],
    "garden": ["garden hose", "rose seeds", "watering can", "garden gloves", "plant pot"],
    "toys": ["toy robot", "plush bear", "building blocks", "toy car", "puzzle box"],
    "books": ["crime novel", "cook book", "travel guide", "poetry book", "history book"],
}
SMALL = {
    "als": {"iterations": 8, "factors": 16},
    "bpr": {"iterations": 40, "factors": 16},
    "recommenders": [*DEFAULT_PARAMS["recommenders"], "bpr"],  # bpr is a protocol baseline only
}


def catalog_of(items: list[str]) -> Catalog:
    titles = {f"{g}-{n}": title for g, titles in GROUPS.items() for n, title in enumerate(titles)}
    return Catalog(
        items=items,
        title=[titles.get(s, s) for s in items],
        category=[s.split("-")[0] for s in items],
        price=[5.0 + 3 * (hash(s) % 7) for s in items],
    )


def planted_shop(seed: int = 3, users_per_group: int = 30, days: int = 240) -> Interactions:
    """Each shopper belongs to a group, buys its two anchor items (X-0 and X-1) together, re-buys a
    personal staple of the group on a regular cycle, and sometimes one more item of the group."""
    rng = np.random.default_rng(seed)
    rows = []
    order = 0
    for g in GROUPS:
        for u in range(users_per_group):
            user = f"{g}-u{u}"
            staple = f"{g}-{2 + u % 3}"
            cycle = 10 + (u % 4) * 5
            start = rng.uniform(0, cycle)
            t = start
            while t < days:
                order += 1
                basket = {staple}
                if rng.random() < 0.3:
                    basket |= {f"{g}-0", f"{g}-1"}
                if rng.random() < 0.1:
                    basket.add(f"{g}-{rng.integers(0, 5)}")
                for item in sorted(basket):
                    rows.append((user, item, PURCHASE, 1.0, NOW - (days - t) * DAY, f"o{order}"))
                t += cycle * rng.uniform(0.8, 1.2)
    return Interactions.from_rows(rows)


@pytest.fixture(scope="module")
def shop():
    data = planted_shop()
    return data, catalog_of(list(data.items))


@pytest.fixture(scope="module")
def bundle(shop):
    data, catalog = shop
    return train_bundle(data=data, catalog=catalog, params=SMALL, now=NOW)


def ranked(bundle: ModelBundle, user: str, recommender: str) -> list[str]:
    row = bundle.user_index[user]
    scores = bundle.score_users(np.array([row]), recommender)[0]
    return [str(bundle.items[i]) for i in np.argsort(-scores, kind="stable")]


def test_popularity_ranks_the_item_with_most_distinct_buyers_first():
    # given A bought by three people (once each), B by one person five times
    rows = [(f"p{n}", "A", PURCHASE, 1, NOW - DAY, f"a{n}") for n in range(3)]
    rows += [("p9", "B", PURCHASE, 1, NOW - n * DAY, f"b{n}") for n in range(5)]
    rows += [("p8", "C", VIEW, 1, NOW - DAY, "")]
    b = train_bundle(data=Interactions.from_rows(rows), catalog=None, params={"recommenders": []}, now=NOW)
    # then distinct buyers decide, and ties break by item id; a view counts only after purchases
    assert [r.item_id for r in b.popular(k=3)] == ["A", "B", "C"]
    assert all(r.reason == {"type": "popular"} and r.recommender == "popularity" for r in b.popular(k=3))


def test_buy_again_ranks_own_items_by_purchase_count_then_popularity(bundle):
    user = "coffee-u0"  # staple coffee-2
    top = ranked(bundle, user, "buy_again")
    assert top[0] == "coffee-2"
    own = set(bundle.items[bundle.state.purchases[bundle.user_index[user]].indices])
    assert set(top[: len(own)]) == own


@pytest.mark.parametrize("name", ["als", "bpr", "item_item", "item_item_bm25", "repeat_knn", "hybrid"])
def test_collaborative_recommenders_rank_the_shoppers_own_group_first(bundle, name):
    # every shopper's purchases stay inside their group: the group's items lead their list
    for user in ("coffee-u1", "garden-u4", "toys-u7", "books-u2"):
        group = user.split("-")[0]
        top = ranked(bundle, user, name)[:3]
        assert all(item.startswith(group) for item in top), (name, user, top)


def test_item_neighbours_find_the_planted_pair(bundle):
    # are always bought together
    for name in ("item_item", "item_item_bm25", "session"):
        rec = bundle.recommenders[name]
        scores = rec.score_session(bundle.state, np.array([bundle.item_index["garden-0"]]))
        scores[bundle.item_index["garden-0"]] = -np.inf
        assert bundle.items[int(np.argmax(scores))] == "garden-1", name
    assert bundle.similar(item_id="toys-0", k=1)[0].item_id == "toys-1"
    assert bundle.similar(item_id="toys-0", k=1)[0].reason == {"type": "similar_product", "item_id": "toys-0"}


def test_content_finds_items_with_the_same_words():
    items = ["a", "b", "c", "d"]
    catalog = Catalog(items=items, title=["red wool scarf", "blue wool scarf", "garden hose", "steel hammer"])
    rows = [(f"u{n}", items[n % 4], PURCHASE, 1, NOW - DAY, f"o{n}") for n in range(8)]
    b = train_bundle(data=Interactions.from_rows(rows), catalog=catalog, params={"recommenders": ["content"]}, now=NOW)
    scores = b.recommenders["content"].score_session(b.state, np.array([b.item_index["a"]]))
    assert b.items[int(np.argmax(scores))] == "b"
    assert scores[b.item_index["c"]] == 0


def test_trending_prefers_recent_interest_over_old_popularity():
    rows = [(f"old{n}", "OLD", PURCHASE, 1, NOW - 200 * DAY, f"o{n}") for n in range(10)]
    rows += [(f"new{n}", "NEW", PURCHASE, 1, NOW - DAY, f"n{n}") for n in range(4)]
    b = train_bundle(data=Interactions.from_rows(rows), catalog=None, params={"recommenders": ["trending"]}, now=NOW)
    assert b.popular(k=1)[0].item_id == "OLD"
    assert b.trending(k=1)[0].item_id == "NEW"
    assert b.trending(k=1)[0].reason == {"type": "trending"}


def test_event_kinds_are_weighted_view_below_cart_below_purchase():
    from recommendations.engine.data import CART

    rows = [("u", "V", VIEW, 1, NOW, ""), ("u", "C", CART, 1, NOW, ""), ("u", "P", PURCHASE, 1, NOW, "o")]
    b = train_bundle(data=Interactions.from_rows(rows), catalog=None, params={"recommenders": []}, now=NOW)
    w = b.state.interactions[0].toarray()[0]
    assert w[b.item_index["V"]] < w[b.item_index["C"]] < w[b.item_index["P"]]
    # time decay: the same purchase a half-life ago weighs half
    old = [("u", "P", PURCHASE, 1, NOW - 180 * DAY, "o")]
    b2 = train_bundle(data=Interactions.from_rows(old), catalog=None, params={"recommenders": []}, now=NOW)
    assert b2.state.interactions[0, 0] == pytest.approx(w[b.item_index["P"]] / 2, rel=1e-4)


@pytest.mark.parametrize("bags", [1, 2])
def test_hybrid_is_at_least_as_good_as_its_components_on_the_planted_shop(shop, bags):
    # given the planted repeat cycle (staples) and neighbourhood (group anchors), judged on a holdout
    data, catalog = shop
    train, truth = holdout_split(data, 20)
    b = train_bundle(data=train, catalog=catalog, params={**SMALL, "hybrid": {"bags": bags}}, now=truth.cutoff)
    ndcg = {name: evaluate_bundle(b, truth, 5, recommender=name)["ndcg@5"] for name in b.recommenders}
    assert b.recommenders["hybrid"].trained  # the learned blend, not the fallback
    assert len(b.recommenders["hybrid"].models) == bags
    best_component = max(v for k, v in ndcg.items() if k != "hybrid")
    assert ndcg["hybrid"] >= best_component - 0.01, ndcg
    assert ndcg["hybrid"] > ndcg["popularity"] + 0.2


def test_recommend_for_a_known_user_explains_each_item(bundle):
    recs = bundle.recommend(user_id="coffee-u0", session_items=[], k=5, exclude=set(), context={})
    assert len(recs) == 5 and all(isinstance(r, Rec) for r in recs)
    assert recs[0].item_id == "coffee-2" and recs[0].recommender == "hybrid"
    assert recs[0].reason == {"type": "bought", "item_id": "coffee-2"}
    assert bundle.recommend(user_id="coffee-u0", k=5, exclude={"coffee-2"})[0].item_id != "coffee-2"
    # items not bought before are explained by the item of the person's own history that led to them
    row = bundle.user_index["coffee-u0"]
    bought = {str(bundle.items[i]) for i in bundle.state.purchases[row].indices}
    for rec in bundle.recommend(user_id="coffee-u0", k=12):
        if rec.reason["type"] == "bought":
            assert rec.item_id in bought and rec.reason["item_id"] == rec.item_id
        elif rec.reason["type"] == "because_bought":
            assert rec.item_id not in bought and rec.reason["item_id"] in bought
        else:
            assert rec.reason["type"] in ("popular", "similar_shoppers"), rec.reason
    assert {r.reason["type"] for r in bundle.recommend(user_id="coffee-u0", k=12)} >= {"bought", "because_bought"}
    # the score is the ranker's probability, not a rank discount
    assert all(0.0 <= r.score <= 1.0 for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_cold_start_uses_session_then_segment_then_global_popularity(bundle):
    # a session: similar items of what is in it first
    recs = bundle.recommend(user_id="stranger", session_items=["books-0"], k=8, exclude=set(), context={})
    assert recs[0].item_id == "books-1" and recs[0].recommender == "session"
    assert recs[0].reason == {"type": "similar_to", "item_id": "books-0"}
    assert "books-0" not in [r.item_id for r in recs]
    # no session: the person's segments' popularity, then global popularity
    bundle.segment_popularity_set(slug="gardeners", name="Gardeners", user_ids=["garden-u1", "garden-u2", "nobody"])
    recs = bundle.recommend(user_id=None, session_items=[], k=12, exclude=set(), context={"segments": ["gardeners"]})
    kinds = [r.recommender for r in recs]
    assert kinds[0] == "segment_popularity" and kinds[-1] == "popularity"
    assert kinds.index("popularity") == kinds.count("segment_popularity")  # segment ones all come first
    assert recs[0].reason == {"type": "popular_in_segment", "segment": "gardeners", "name": "Gardeners"}
    assert all(r.item_id.startswith("garden") for r in recs if r.recommender == "segment_popularity")
    assert len({r.item_id for r in recs}) == 12
    # neither: global popularity
    recs = bundle.recommend(user_id=None, session_items=["unknown-sku"], k=3, exclude=set(), context={})
    assert [r.recommender for r in recs] == ["popularity"] * 3


def test_forget_users_erases_rows_and_factors(shop):
    data, catalog = shop
    b = train_bundle(data=data, catalog=catalog, params=SMALL, now=NOW)
    n_users = b.state.n_users
    before = b.recommend(user_id="toys-u3", k=5)
    b.forget_users(["toys-u3", "not-a-user"])
    assert not b.known_user("toys-u3") and "toys-u3" not in set(b.state.users)
    assert b.state.n_users == n_users - 1
    for name in ("als", "bpr"):
        assert b.recommenders[name].user_factors.shape[0] == n_users - 1
    assert b.recommenders["repeat_knn"].vectors.shape[0] == n_users - 1
    stats = b.recommenders["hybrid"].stats
    assert stats.user_orders.shape[0] == stats.recent_orders.shape[0] == n_users - 1
    # they are now a stranger; everybody else still gets their own list
    assert [r.recommender for r in b.recommend(user_id="toys-u3", k=5)] == ["popularity"] * 5
    assert b.recommend(user_id="toys-u4", k=3)[0].reason["type"] == "bought"
    assert before[0].reason["type"] == "bought"
    # and the erasure survives storage
    assert not ModelBundle.from_bytes(b.to_bytes()).known_user("toys-u3")


def test_to_bytes_round_trip_gives_the_same_answers(bundle):
    copy = ModelBundle.from_bytes(bundle.to_bytes())
    for user in ("coffee-u0", "toys-u9"):
        assert copy.recommend(user_id=user, k=5) == bundle.recommend(user_id=user, k=5)
    assert copy.similar(item_id="books-0", k=3) == bundle.similar(item_id="books-0", k=3)
    assert copy.params == bundle.params and copy.metrics == bundle.metrics
    with pytest.raises(ValueError):
        ModelBundle.from_bytes(__import__("pickle").dumps({"not": "a bundle"}))


class _Boom:
    def __reduce__(self):
        return (print, ("pickle executed code",))


def test_artifacts_hold_no_pickle_and_reading_one_cannot_execute_code(bundle, capsys):
    import io
    import json
    import zipfile

    blob = bundle.to_bytes()
    assert b"\x80\x04\x95" not in blob[:2] and zipfile.is_zipfile(io.BytesIO(blob))  # an npz, not a pickle
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for name in z.namelist():  # every member is a plain array (numpy refuses object arrays unpickled)
            np.load(z.open(name), allow_pickle=False)
        manifest = json.loads(np.load(z.open("manifest.npy"), allow_pickle=False).tobytes())
    assert set(manifest["recommenders"]) == set(bundle.recommenders)
    # a pickle, even one whose loading would run code, is refused without being run
    with pytest.raises(ValueError):
        ModelBundle.from_bytes(__import__("pickle").dumps(_Boom()))
    assert "pickle executed code" not in capsys.readouterr().out
    # a manifest naming a class that is not one of the engine's is refused
    manifest["recommenders"]["popularity"]["@obj"] = "subprocess.Popen"
    forged = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        arrays = {n[:-4]: np.load(z.open(n), allow_pickle=False) for n in z.namelist() if n != "manifest.npy"}
    payload = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    np.savez(forged, manifest=payload, **arrays)
    with pytest.raises(ValueError, match="not an engine class"):
        ModelBundle.from_bytes(forged.getvalue())


def test_stored_ranker_predicts_like_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from recommendations.engine import artifact
    from recommendations.engine.artifact import BoostedTrees

    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 5))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1]) + rng.normal(0, 0.5, 2000) > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(X, y)
    trees = BoostedTrees.from_sklearn(model)
    assert np.allclose(trees.predict_proba(X), model.predict_proba(X)[:, 1], atol=1e-9)
    # numpy walks the trees (no scikit-learn at serving time): missing values, infinities, one row, none
    Q = rng.normal(size=(300, 5)) * 3
    Q[rng.random(Q.shape) < 0.3] = np.nan
    Q[rng.random(Q.shape) < 0.05] = np.inf
    Q[rng.random(Q.shape) < 0.05] = -np.inf
    assert np.allclose(trees.predict_proba(Q), model.predict_proba(Q)[:, 1], atol=1e-12)
    assert np.allclose(trees.predict_proba(Q[:1]), model.predict_proba(Q[:1])[:, 1], atol=1e-12)
    assert trees.predict_proba(Q[:0]).shape == (0,)
    # as stored and mapped back from a file
    blob = artifact.dump({"ranker": trees}, {})
    again = artifact.load(blob)[0]["ranker"]
    assert np.array_equal(again.predict_proba(Q), trees.predict_proba(Q))


def test_unknown_recommender_is_a_clear_error(shop):
    data, catalog = shop
    with pytest.raises(ValueError, match="Unknown recommender 'nope'"):
        train_bundle(data=data, catalog=catalog, params={"recommenders": ["nope"]}, now=NOW)


@pytest.mark.parametrize(
    "rows",
    [
        [("u1", "A", VIEW, 1, DAY, ""), ("u2", "B", VIEW, 1, 2 * DAY, ""), ("u1", "B", VIEW, 1, 3 * DAY, "")],
        [("u1", "A", PURCHASE, 1, DAY, "o1")],
        [
            ("u1", "A", PURCHASE, 1, DAY, "o1"),
            ("u2", "A", PURCHASE, 1, 50 * DAY, "o2"),
            ("u2", "B", PURCHASE, 1, 90 * DAY, "o3"),
        ],
    ],
    ids=["views only", "one purchase", "too few to learn from"],
)
def test_tiny_shops_train_and_answer_with_the_fallback_blend(rows):
    data = Interactions.from_rows(rows)
    b = train_bundle(data=data, catalog=Catalog(items=data.items), params={}, now=100 * DAY)
    assert not b.recommenders["hybrid"].trained  # fewer than min_positives: no ranker
    recs = b.recommend(user_id="u1", k=2)
    assert recs and recs[0].recommender == "hybrid"
    assert len({r.item_id for r in recs}) == len(recs) == min(2, len(data.items))
    b.forget_users(["u1"])
    assert not ModelBundle.from_bytes(b.to_bytes()).known_user("u1")


def test_similar_items_are_the_same_kind_of_product_when_co_purchases_point_elsewhere():
    # every watch buyer also bought a leather tote: co-purchases say "tote", content says "watch"
    rows = []
    for u in range(40):
        rows.append((f"u{u}", f"watch-{u % 4}", PURCHASE, 1.0, NOW - (u + 1) * DAY, f"o{u}"))
        rows.append((f"u{u}", f"tote-{u % 3}", PURCHASE, 1.0, NOW - (u + 1) * DAY, f"o{u}"))
    data = Interactions.from_rows(rows)
    items = list(data.items)
    catalog = Catalog(
        items=items,
        title=["Steel watch" if s.startswith("watch") else "Leather tote" for s in items],
        category=["Watches > Men" if s.startswith("watch") else "Bags > Totes" for s in items],
        brand=["Chrono" if s.startswith("watch") else "Hide" for s in items],
        price=[120.0 if s.startswith("watch") else 60.0 for s in items],
    )
    b = train_bundle(data=data, catalog=catalog, params=SMALL, now=NOW)
    similar = b.similar(item_id="watch-0", k=3)
    assert [r.item_id.split("-")[0] for r in similar] == ["watch"] * 3
    assert all(r.reason == {"type": "similar_product", "item_id": "watch-0"} for r in similar)
    assert similar[0].score == 1.0 and all(0 < r.score <= 1.0 for r in similar)
    # what is bought with it is the complement, explained as such
    bought_with = b.complements(items=["watch-0"], k=3, reason="bought_with")
    assert bought_with and all(r.item_id.startswith("tote") for r in bought_with)
    assert bought_with[0].reason == {"type": "bought_with", "item_id": "watch-0"}


def test_neighbours_of_a_best_seller_are_looked_for_among_its_strongest_people_only(shop):
    data, catalog = shop
    b = train_bundle(data=data, catalog=catalog, params={**SMALL, "repeat_knn": {"max_item_people": 3}}, now=NOW)
    knn = b.recommenders["repeat_knn"]
    vt = knn.vectors_t()
    assert np.diff(vt.indptr).max() == 3
    full = knn.vectors.T.tocsr()
    for item in range(vt.shape[0]):
        kept = vt.data[vt.indptr[item] : vt.indptr[item + 1]]
        everyone = np.sort(full.data[full.indptr[item] : full.indptr[item + 1]])[::-1]
        assert np.allclose(np.sort(kept)[::-1], everyone[: len(kept)])  # the largest weights


def test_the_per_person_part_is_stored_apart_in_shards_and_put_back_together(bundle, tmp_path, monkeypatch):
    from recommendations.engine import bundle as bundle_module
    from recommendations.engine.artifact import write
    from recommendations.engine.bundle import shard_of

    monkeypatch.setattr(bundle_module, "PEOPLE_PER_SHARD", 7)  # several shards for the test shop's people
    item, shards, parts = bundle.to_parts()
    assert shards == -(-bundle.state.n_users // 7) and len(parts) <= shards
    assert sum(people for _, people, _ in parts) == bundle.state.n_users
    # the item part holds nobody: no person id, no per-person row
    assert not ModelBundle.from_parts(item, []).state.n_users
    assert b"coffee-u0" not in item
    for n, _, blob in parts:  # every person is in the shard its id names
        ids = ModelBundle.people_of(blob)
        assert (shard_of(ids, shards) == n).all()
    write(str(tmp_path / "item.npz"), item)
    write(str(tmp_path / "people.npz"), ModelBundle.people_concat([blob for _, _, blob in parts]))
    for copy in (
        ModelBundle.from_parts(item, [blob for _, _, blob in parts]),
        ModelBundle.from_parts(str(tmp_path / "item.npz"), str(tmp_path / "people.npz")),  # memory-mapped
    ):
        for user in ("coffee-u0", "toys-u9", "garden-u2"):
            assert copy.recommend(user_id=user, k=5) == bundle.recommend(user_id=user, k=5)
        assert copy.similar(item_id="books-0", k=3) == bundle.similar(item_id="books-0", k=3)
        assert copy.for_product(item_id="books-0", k=4) == bundle.for_product(item_id="books-0", k=4)
    mapped = ModelBundle.from_parts(str(tmp_path / "item.npz"), str(tmp_path / "people.npz"))
    assert isinstance(mapped.recommenders["als"].user_factors.base, np.memmap) or not mapped.state.n_users
    # erasure rewrites one shard: the person is gone from it, the others are untouched
    n = int(shard_of(["toys-u3"], shards)[0])
    blob = next(b for s, _, b in parts if s == n)
    rewritten, left, removed = ModelBundle.shard_forget(blob, {"toys-u3", "not-a-user"})
    assert removed == 1 and "toys-u3" not in set(ModelBundle.people_of(rewritten))
    assert left == len(ModelBundle.people_of(blob)) - 1
    erased = ModelBundle.from_parts(item, [rewritten if s == n else b for s, _, b in parts])
    assert not erased.known_user("toys-u3") and erased.state.n_users == bundle.state.n_users - 1
    assert erased.recommend(user_id="coffee-u0", k=5) == bundle.recommend(user_id="coffee-u0", k=5)


def test_the_hybrid_ranks_its_candidates_like_its_dense_scores(bundle):
    rows = np.arange(bundle.state.n_users)
    scores = np.asarray(bundle.score_users(rows), dtype=np.float64)
    items = np.arange(scores.shape[1])
    dense = np.array([np.lexsort((items, -row))[:10] for row in scores])  # by score, ties: lower index
    assert (bundle.top_users(rows, 10) == dense).all()
    assert bundle.top_users(rows, 10, "als") is None  # the other recommenders score every item


def test_the_als_index_finds_the_largest_inner_products_and_survives_storage():
    from recommendations.engine.ann import ItemIndex

    rng = np.random.default_rng(3)
    items = (rng.normal(size=(3000, 16)) * rng.uniform(0.3, 1.5, size=(3000, 1))).astype(np.float32)  # ALS-like norms
    items[:200] = 0.0  # items nobody interacted with: left out of the graph
    people = rng.normal(size=(50, 16)).astype(np.float32)
    index = ItemIndex.build(items, items=np.arange(100, 3000))
    assert index.count == 2800
    for copy in (index, ItemIndex.from_array(index.to_array(), index.meta())):
        found, scores = copy.query(people, 100)
        assert found.shape == (50, 100) and (found >= 200).all()
        assert np.allclose(scores, np.einsum("ij,ikj->ik", people, items[found]), atol=1e-3)  # the inner products
        exact = np.argsort(-(people @ items.T), axis=1)[:, :100]
        recall = np.mean([len(set(f) & set(e)) / 100 for f, e in zip(found, exact, strict=True)])
        assert recall > 0.85  # random 16-dimensional vectors; on the benchmark's ALS factors about 0.99


def test_the_product_of_a_few_rows_is_scipys_product():
    import scipy.sparse as sp

    from recommendations.engine.hybrid import _times

    rng = np.random.default_rng(5)
    B = sp.random(300, 2000, density=0.02, format="csr", random_state=1, dtype=np.float32)
    for density in (0.0, 0.01, 0.2):
        A = sp.random(3, 300, density=density, format="csr", random_state=int(rng.integers(100)), dtype=np.float32)
        ours, theirs = _times(A, B), (A @ B).tocsr()
        theirs.sum_duplicates()
        assert ours.shape == theirs.shape and ours.has_canonical_format
        assert (ours.indptr == theirs.indptr).all() and (ours.indices == theirs.indices).all()
        assert np.allclose(ours.data, theirs.data, rtol=1e-6)


@pytest.mark.parametrize("seed", range(20))
def test_the_few_rows_product_equals_scipys(seed):
    """Serving's own sparse product (a request's few rows) gives exactly scipy's ``A @ B``: same
    entries, same values, no stored zeros; above FEW_ROWS it is scipy's."""
    import scipy.sparse as sp

    from recommendations.engine.hybrid import FEW_ROWS, _times

    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, FEW_ROWS + 3))
    inner, width = int(rng.integers(1, 40)), int(rng.integers(1, 60))
    A = sp.random(rows, inner, density=rng.uniform(0, 0.6), format="csr", dtype=np.float32, random_state=seed)
    B = sp.random(inner, width, density=rng.uniform(0, 0.6), format="csr", dtype=np.float32, random_state=seed + 1)
    if seed % 3 == 0 and A.nnz and B.nnz:  # entries that cancel: the result must not keep the zero
        B.data[:] = 1.0
        A.data[: A.nnz // 2] = -1.0
    got, want = _times(A, B), A @ B
    want.eliminate_zeros()
    assert got.shape == want.shape and got.dtype == want.dtype
    assert (got != want).nnz == 0 or np.allclose(got.toarray(), want.toarray(), rtol=1e-6, atol=1e-6)
    assert got.nnz == want.nnz
    assert not (got.data == 0).any()


SERVE_FROM_FILES = """
import json, sys
from recommendations.engine.bundle import ModelBundle
b = ModelBundle.from_parts(sys.argv[1], sys.argv[2])
recs = [[r.item_id, r.score, r.reason] for u in sys.argv[3:] for r in b.recommend(user_id=u, k=5)]
print(json.dumps({"recs": recs, "modules": sorted({m.split(".")[0] for m in sys.modules} & set(%r))}))
"""


def test_a_served_hybrid_answers_from_its_files_without_scikit_learn(bundle, tmp_path):
    """A web process loads the stored ranker's trees and scores candidates without importing
    scikit-learn (nor pandas, scipy.stats and joblib behind it: ~110 MB of every worker), and
    answers exactly what the trained bundle answers."""
    import json
    import subprocess
    import sys

    from recommendations.engine.artifact import write
    from tests.conftest import REPO

    assert bundle.primary == "hybrid" and bundle.recommenders["hybrid"].trained
    item, _, parts = bundle.to_parts()
    write(str(tmp_path / "item.npz"), item)
    write(str(tmp_path / "people.npz"), ModelBundle.people_concat([blob for _, _, blob in parts]))
    users = ["coffee-u0", "toys-u9", "garden-u2"]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_FROM_FILES % (("sklearn", "pandas", "statsmodels", "implicit"),),
            str(tmp_path / "item.npz"),
            str(tmp_path / "people.npz"),
            *users,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["modules"] == []
    expected = [[r.item_id, r.score, r.reason] for u in users for r in bundle.recommend(user_id=u, k=5)]
    assert answer["recs"] == json.loads(json.dumps(expected))
