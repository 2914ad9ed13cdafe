"""`make demo` step: the demo store's catalog, a model trained now, a URL to try, and one experiment
(personalised vs popular on home) and one bandit (cart) with simulated traffic through serving.

Idempotent: the catalog upsert changes nothing the second time; each run trains a fresh model
(promoted only when it beats the active one); the demo secret key is replaced each run (it is
shown once).
"""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from cdp.demo.store import demo_catalog
from cdp.models import ApiKey
from cdp.services import api_key_create, api_key_revoke
from consent.selectors import consent_granted_q
from profiles.models import Identifier
from recommendations import services

DEMO_KEY_NAME = "demo-recommendations"


class Command(BaseCommand):
    help = "Load the demo catalog, run a model refresh now, and print a sample recommendations request."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--experiment-days", type=int, default=4, help="simulated days of experiment traffic")
        parser.add_argument("--experiment-visits", type=int, default=3, help="home visits per shopper and day")

    def handle(self, *args, **options) -> None:
        if options["experiment_days"] < 1 or options["experiment_visits"] < 1:
            raise CommandError("--experiment-days and --experiment-visits must be at least 1.")
        items = [{**p, "in_stock": True} for p in demo_catalog()]
        result = services.product_upsert_many(items=items, source="import")
        self.stdout.write(f"demo_recommendations: catalog {result.created} created, {result.updated} updated")
        version = services.model_refresh_start(requested_by="demo", queue=False)
        version = services.model_refresh_execute(version_id=version.pk)
        if version.status == "failed":
            raise CommandError(f"model refresh failed: {version.error}")
        self.stdout.write(
            f"demo_recommendations: model v{version.pk} is {version.status} "
            f"(ndcg@10 {version.metrics.get('ndcg@10', 0):.3f} on a {version.data_stats.get('holdout_users', 0)}"
            f"-customer holdout; {version.decision})"
        )
        for key in ApiKey.objects.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True):
            api_key_revoke(key=key)
        _, raw = api_key_create(name=DEMO_KEY_NAME)
        shoppers = Identifier.objects.filter(kind="user_id", profile__merged_into__isnull=True).order_by("value")
        consenting = shoppers.filter(consent_granted_q(purpose="personalisation", profile_field="profile_id"))
        shopper = consenting.values_list("value", flat=True).first() or shoppers.values_list("value", flat=True).first()
        base = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
        query = f"user_id={shopper}&k=5&placement=home" if shopper else "k=5"
        self.stdout.write(
            "Try recommendations for a demo shopper (consent decides whether they are personalised):\n"
            f'  curl -s -H "Authorization: Bearer {raw}" "{base}/api/v1/recommendations/?{query}"\n'
            f'  curl -s -H "Authorization: Bearer {raw}" "{base}/api/v1/products/{items[0]["sku"]}/similar/?k=5"'
        )
        # experiments (issue 14): one A/B test and one bandit, with simulated traffic through serving
        from recommendations.experiments.demo import EXPERIMENT_KEY, demo_experiments_run

        run = demo_experiments_run(
            days=options["experiment_days"], visits=options["experiment_visits"], out=self.stdout.write
        )
        if run.get("experiment"):
            self.stdout.write(
                "Experiment and bandit (admin):\n"
                f"  {base}/admin/recommendations/experiment/{run['experiment']}/results/\n"
                f"  {base}/admin/recommendations/banditpolicy/{run['bandit']}/shares/\n"
                f'  curl -s -H "Authorization: Bearer {raw}" "{base}/api/v1/experiments/{EXPERIMENT_KEY}/results/"'
            )
