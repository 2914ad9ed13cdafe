#!/usr/bin/env python
"""Where true pairs are lost: cdp's matcher (profiles/identity/fuzzy/pipeline.py) on a person CSV, offline.

    python benchmarks/identity_diagnose.py FILE [FILE ...]

Runs the product's method on the file's records directly (no database, no deterministic ingestion
step), then follows every true pair (same ``entity_id``) through the pipeline: not proposed by
blocking; proposed but below the review threshold; between review and auto-merge; at or above
auto-merge but refused (why); lost because a cluster would not take it (coherence); merged. And the
false pairs that ended merged. Prints one JSON object per file.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
os.environ.setdefault("DEBUG", "true")


def diagnose(path: Path) -> dict:
    import django

    django.setup()
    import numpy as np

    from profiles.identity.fuzzy import pipeline
    from profiles.identity.fuzzy.service import thresholds

    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    started = time.monotonic()
    table = pipeline.table_from_rows(rows)
    params = pipeline.estimate(table)
    auto, review = thresholds()
    scored = pipeline.score_and_decide(table, params, auto=auto, review=review)
    seconds = time.monotonic() - started
    entity = np.array([r["entity_id"] for r in rows], dtype=object)
    label = np.arange(len(rows))
    for members in scored.decisions.clusters:
        label[members] = members[0]
    by_entity = Counter(entity.tolist())
    true_pairs = sum(n * (n - 1) // 2 for n in by_entity.values())
    merged = sum(n * (n - 1) // 2 for n in Counter(label.tolist()).values())
    hits = sum(n * (n - 1) // 2 for n in Counter(zip(label.tolist(), entity.tolist(), strict=True)).values())
    a, b, p = scored.a, scored.b, scored.p
    same = entity[a] == entity[b]
    together = label[a] == label[b]
    refused = scored.decisions.refused
    stages = Counter()
    reasons = Counter()
    for k in np.flatnonzero(same):
        if together[k]:
            stages["merged (directly or through the cluster)"] += 1
        elif p[k] < review:
            stages["proposed, below review"] += 1
        elif p[k] < auto:
            stages["proposed, review band"] += 1
        else:
            stages["proposed, auto band, not merged"] += 1
            reasons[refused.get(int(k), "?")] += 1
    # review-band true pairs: what keeps them low
    sizes = Counter(by_entity.values())
    precision = hits / merged if merged else 1.0
    recall = hits / true_pairs if true_pairs else 1.0
    return {
        "file": path.stem,
        "records": len(rows),
        "true_pairs": true_pairs,
        "blocked_true_pairs": int(same.sum()),
        "blocking_recall": round(float(same.sum()) / max(true_pairs, 1), 4),
        "candidate_pairs": len(a),
        "stages_of_proposed_true_pairs": dict(stages),
        "auto_band_refusals_of_true_pairs": dict(reasons.most_common()),
        "false_pairs_auto": int(((~same) & (p >= auto)).sum()),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "review_pairs": len(scored.decisions.review),
        "review_records": len({int(x) for k in scored.decisions.review for x in (a[k], b[k])}),
        "largest_entities": sorted(sizes.items())[-5:],
        "seconds": round(seconds, 1),
        "matches_per_record": round(params.matches_per_record, 4),
    }


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(json.dumps(diagnose(Path(name))), flush=True)
