"""Reads of experiments: metrics per variant from the served log and events (set-based SQL), and the
results (statistics per metric and variant, SRM, excluded units)."""

from __future__ import annotations

from django.utils import timezone

from .models import Experiment, ExperimentSnapshot, Metric
from .statistics import Summary, compare, cuped_theta, holm, srm
from .units import COLUMNS, PAIRS, units_drain, variant_sums_stored

# metrics from the per-unit columns (see ``units``: e answers served, c clicks on them, o orders,
# r revenue, v converted (0/1), po / pr orders and revenue in the pre-exposure window)
METRICS = {
    # metric: (numerator, denominator or None, CUPED covariate or None, proportion test)
    Metric.CTR: ("c", "e", None, False),
    Metric.CONVERSION: ("o", None, "po", False),
    Metric.REVENUE: ("r", None, "pr", False),
    Metric.AOV: ("r", "o", None, False),
    "converted": ("v", None, None, True),
}


def variant_sums(*, experiment: Experiment) -> list[dict]:
    """Per variant (and whether the unit saw several variants): consenting units and the sums of
    every column, its square and the cross products the statistics need, from the rollups kept up
    incrementally (``units``; ``units.variant_sums_reference`` is the full recompute)."""
    return variant_sums_stored(experiment=experiment)


def summary_of(row: dict, metric: str, *, cuped: bool = True) -> Summary:
    num, den, cov, _ = METRICS[metric]

    def pair(a: str, b: str) -> float:
        return row.get(a + b, row.get(b + a, 0.0))

    s = Summary(n=row["n"], y=row[num], yy=row[num + num])
    if den:
        s.x, s.xx, s.xy = row[den], row[den + den], pair(num, den)
    if cov and cuped:
        s.z, s.zz, s.yz = row[cov], row[cov + cov], pair(num, cov)
    return s


def compute_results(*, experiment: Experiment, rows: list[dict]) -> dict:
    variants = list(experiment.variants.all())
    by_id = {v.pk: v for v in variants}
    clean = {v.pk: None for v in variants}
    excluded = {v.key: 0 for v in variants}
    for row in rows:
        variant = by_id.get(row["variant_id"])
        if variant is None:
            continue
        if row["multi"]:
            excluded[variant.key] += row["n"]
        else:
            clean[variant.pk] = row
    empty = {"n": 0, **dict.fromkeys(COLUMNS, 0.0), **{c + c: 0.0 for c in COLUMNS}, **{a + b: 0.0 for a, b in PAIRS}}
    units = {v.key: (clean[v.pk] or empty)["n"] for v in variants}
    control = next((v for v in variants if v.is_control), variants[0])
    metrics = [experiment.primary_metric, *[m for m in experiment.guardrail_metrics if m != experiment.primary_metric]]
    table = []
    p_values = []
    for metric in metrics:
        summaries = {v.key: summary_of(clean[v.pk] or empty, metric, cuped=experiment.cuped_days > 0) for v in variants}
        theta = cuped_theta([s for s in summaries.values() if s.n])
        z_pooled = 0.0
        if theta is not None:
            n = sum(s.n for s in summaries.values())
            z_pooled = sum(s.z for s in summaries.values()) / n if n else 0.0
        proportion = METRICS[metric][3]
        for v in variants:
            s = summaries[v.key]
            entry = {
                "metric": metric,
                "variant": v.key,
                "is_control": v.pk == control.pk,
                "units": s.n,
                "value": s.mean(),
                "cuped": theta is not None,
            }
            if v.pk != control.pk:
                cmp = compare(
                    summaries[control.key],
                    s,
                    alpha=experiment.alpha,
                    sequential=experiment.sequential,
                    theta=theta,
                    z_pooled=z_pooled,
                    proportion=proportion,
                    tuning=experiment.sequential_tuning,
                )
                entry.update(
                    {
                        "adjusted_value": cmp.variant_mean,
                        "control_value": cmp.control_mean,
                        "lift": cmp.lift,
                        "low": cmp.low,
                        "high": cmp.high,
                        "p_value": cmp.p_value,
                        "fixed_p_value": cmp.fixed_p_value,
                        "fixed_low": cmp.fixed_low,
                        "fixed_high": cmp.fixed_high,
                        "chance_to_win": cmp.chance_to_win,
                        "sequential": cmp.sequential,
                    }
                )
                p_values.append((len(table), cmp.p_value))
            table.append(entry)
    adjusted = holm([p for _, p in p_values], alpha=experiment.alpha)
    for (i, _), p in zip(p_values, adjusted, strict=True):
        table[i]["p_value_holm"] = p
        table[i]["significant"] = p < experiment.alpha
    total_units = [units[v.key] + excluded[v.key] for v in variants]
    return {
        "experiment": experiment.key,
        "computed_at": timezone.now().isoformat(),
        "status": experiment.status,
        "srm": srm(total_units, [v.weight for v in variants]) | {"variants": [v.key for v in variants]},
        "units": units,
        "excluded": excluded,
        "metrics": table,
    }


def _clean_floats(value):
    import math

    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _clean_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_floats(v) for v in value]
    return value


def experiment_results(*, experiment: Experiment, refresh: bool = True, snapshot: bool = False) -> dict:
    """Results now; ``refresh`` first brings the unit rows up to date (the pending units of stored
    events, then first exposures and answers from the served log since the last refresh: both
    incremental); ``snapshot`` also stores the results for the cumulative chart."""
    from .services import exposures_refresh

    if refresh and experiment.started_at is not None:
        units_drain()
        exposures_refresh(experiment=experiment, until=experiment.stopped_at or timezone.now())
    results = _clean_floats(compute_results(experiment=experiment, rows=variant_sums(experiment=experiment)))
    if snapshot:
        ExperimentSnapshot.objects.create(experiment=experiment, computed_at=timezone.now(), results=results)
    return results


def experiment_series(*, experiment: Experiment) -> list[dict]:
    """The primary metric's lift and interval per snapshot (first non-control variant), for the chart."""
    out = []
    for snap in experiment.snapshots.order_by("computed_at"):
        for row in snap.results.get("metrics", []):
            if row["metric"] == experiment.primary_metric and not row["is_control"] and row.get("lift") is not None:
                out.append(
                    {
                        "at": snap.computed_at,
                        "variant": row["variant"],
                        "lift": row["lift"],
                        "low": row.get("low"),
                        "high": row.get("high"),
                        "units": sum(snap.results.get("units", {}).values()),
                    }
                )
    return out


def shopper_strategy(
    *, placement: str, device: str = "", profile_id: str | None = None, user_id=None, anonymous_id=None
):
    """(live profile id, personalisation consent, Strategy) of the shopper named, as serving would
    resolve and ask (``serving.UnknownProfile`` for an unknown profile id)."""
    from recommendations import serving

    from .strategy import strategy_for

    query = serving.Query(profile_id=profile_id, user_id=user_id, anonymous_id=anonymous_id)
    live_id, consent = serving.resolve_profile(query)
    segments = [slug for slug, _ in serving.profile_segments(live_id)] if live_id and consent else []
    strategy = strategy_for(
        profile_id=live_id, placement=placement, device=device, segments=segments, personalisation_consent=consent
    )
    return live_id, consent, strategy
