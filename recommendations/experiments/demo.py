"""`make demo`'s experiment and bandit: simulated shoppers visit the shop through the real serving
path (``serving.recommend``), and click and buy through the real ingestion path (``clean_event`` +
``events_ingest``), so that exposures, metrics, results and the bandit's shares come from the same
code as in production.

The simulated shopper clicks a list with a probability that grows with the share of its items in
the categories the shopper bought before (so a list that knows the shopper does better, as far as
the model earns it), and buys a clicked item now and then.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.utils import timezone

EXPERIMENT_KEY = "demo-home-personalised"
BANDIT_KEY = "demo-cart-bandit"
BASE_CLICK = 0.02
MATCH_CLICK = 0.40  # added for a list whose items are all in the shopper's categories
BUY_AFTER_CLICK = 0.25
CLICK_DELAY = timedelta(seconds=5)  # a shopper clicks after the list was served (and logged)


@dataclass
class Shopper:
    user_id: str
    profile_id: str
    categories: set[str]


def _shoppers() -> list[Shopper]:
    """Demo shoppers with personalisation consent and the top categories of what they bought."""
    from consent.selectors import consent_granted_q
    from profiles.models import Identifier

    ids = dict(
        Identifier.objects.filter(kind="user_id", profile__merged_into__isnull=True)
        .filter(consent_granted_q(purpose="personalisation", profile_field="profile_id"))
        .values_list("profile_id", "value")
    )
    if not ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.profile_id, split_part(line ->> 'category', ' > ', 1)
            FROM profiles_event e, jsonb_array_elements(e.properties -> 'products') AS line
            WHERE e.name = 'Order Completed' AND e.profile_id = ANY(%s)
              AND jsonb_typeof(e.properties -> 'products') = 'array'
            """,
            [list(ids)],
        )
        bought: dict = {}
        for pid, category in cursor.fetchall():
            if category:
                bought.setdefault(pid, set()).add(category.lower())
    return [Shopper(user_id=ids[pid], profile_id=str(pid), categories=bought.get(pid, set())) for pid in ids]


def _visit(rng, shopper: Shopper, answer, now, payloads: list) -> None:
    items = answer.items[:5]
    if not items:
        return
    match = sum(1 for item in items if (item.get("category") or "").lower() in shopper.categories) / len(items)
    if rng.random() >= BASE_CLICK + MATCH_CLICK * match:
        return
    liked = [item for item in items if (item.get("category") or "").lower() in shopper.categories]
    item = rng.choice(liked or items)  # a shopper clicks what they like, when the list has it
    payloads.append(
        {
            "type": "track",
            "event": "Product Clicked",
            "userId": shopper.user_id,
            "messageId": str(uuid.uuid4()),
            "timestamp": now.isoformat(),
            "properties": {"recommendation_id": answer.recommendation_id, "product_id": item["sku"]},
        }
    )
    if rng.random() < BUY_AFTER_CLICK:
        price = round(rng.uniform(15, 120), 2)
        payloads.append(
            {
                "type": "track",
                "event": "Order Completed",
                "userId": shopper.user_id,
                "messageId": str(uuid.uuid4()),
                "timestamp": now.isoformat(),
                "properties": {
                    "order_id": f"demo-exp-{uuid.uuid4().hex[:12]}",
                    "revenue": price,
                    "currency": "EUR",
                    "products": [{"product_id": item["sku"], "price": price, "quantity": 1}],
                },
            }
        )


def demo_experiments_run(*, days: int = 4, visits: int = 3, seed: int = 14, out=None) -> dict:
    """Replace the demo experiment and bandit, then simulate ``days`` of traffic (a look at the
    experiment's results and a bandit update after each simulated day)."""
    from cdp.demo.store import _demo_source
    from profiles.tracking.ingest import events_ingest
    from profiles.tracking.validate import clean_event
    from recommendations import serving
    from recommendations.services import served_log_writer

    from . import bandits, selectors, services
    from .models import BanditPolicy, Experiment

    write = out or (lambda line: None)
    rng = random.Random(seed)
    shoppers = _shoppers()
    if len(shoppers) < 20:
        write(f"demo experiments: only {len(shoppers)} consenting shoppers; skipped")
        return {"shoppers": len(shoppers)}
    services.demo_objects_discard(experiment_keys=[EXPERIMENT_KEY], bandit_keys=[BANDIT_KEY])
    experiment = services.experiment_create(
        key=EXPERIMENT_KEY,
        name="Home: personalised vs popular",
        hypothesis="Personalised home recommendations get more clicks per list shown than the popular list, "
        "without fewer orders or less revenue per shopper.",
        placements=["home"],
        primary_metric="ctr",
        guardrail_metrics=["conversion", "revenue"],
        attribution_hours=24 * 14,
        sequential_tuning=max(100, len(shoppers)),  # N*: the units this experiment will have
        variants=[
            {"key": "popular", "name": "Popular in the shop", "weight": 50, "is_control": True, "personalised": False},
            {"key": "personalised", "name": "Personalised (active model)", "weight": 50, "personalised": True},
        ],
        by="demo",
    )
    experiment = services.experiment_start(experiment=experiment, by="demo")
    policy = services.bandit_create(
        key=BANDIT_KEY,
        name="Cart: which strategy per device",
        placements=["cart"],
        arms=[
            {"key": "personalised", "personalised": True, "rerank": True},
            {"key": "personalised-no-rerank", "personalised": True, "rerank": False},
            {"key": "popular", "personalised": False, "rerank": True},
        ],
        burn_in=30,
    )
    source = _demo_source()
    for day in range(days):
        payloads: list[dict] = []
        for shopper in shoppers:
            for _ in range(visits):
                answer = serving.recommend(serving.Query(user_id=shopper.user_id, placement="home", k=5))
                _visit(rng, shopper, answer, timezone.now() + CLICK_DELAY, payloads)
            device = rng.choice(["mobile", "desktop"])
            answer = serving.recommend(serving.Query(user_id=shopper.user_id, placement="cart", k=5, device=device))
            _visit(rng, shopper, answer, timezone.now() + CLICK_DELAY, payloads)
        served_log_writer.flush()
        now = timezone.now()
        for start in range(0, len(payloads), 200):
            events_ingest(
                source=source, events=[clean_event(p, received_at=now) for p in payloads[start : start + 200]]
            )
        results = selectors.experiment_results(experiment=Experiment.objects.get(pk=experiment.pk), snapshot=True)
        shares = bandits.bandit_update(policy_id=policy.pk, seed=seed + day)["shares"]
        primary = next((r for r in results["metrics"] if r["metric"] == "ctr" and not r["is_control"]), {})
        write(
            f"demo experiments: day {day + 1}/{days}: units {results['units']}, ctr lift "
            f"{(primary.get('lift') or 0):+.1%} [{(primary.get('low') or 0):+.1%}, {(primary.get('high') or 0):+.1%}], "
            f"p {primary.get('p_value', 1):.4f}; bandit shares {shares}"
        )
    policy = BanditPolicy.objects.get(pk=policy.pk)
    return {"shoppers": len(shoppers), "experiment": experiment.pk, "bandit": policy.pk, "results": results}
