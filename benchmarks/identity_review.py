#!/usr/bin/env python
"""The review queue with a simulated reviewer: F1 after 0, 50 and 200 answers, and the queue's size.

    python benchmarks/identity_review.py FILE [FILE ...] [--answers 0,50,200] [--share 0.02]

Runs cdp's matcher (``profiles/identity/fuzzy/pipeline.py``, what the job runs, without a database
and without the deterministic ingestion step) on the file's records, then plays the review queue of
``profiles/identity/fuzzy/review.py``: one question per pair of clusters (profiles), most uncertain
first; the simulated reviewer answers from the ground truth (the two profiles are one person when
their records' majority ``entity_id`` is the same). An approval merges the two profiles whole, a
rejection makes them a never-merge pair; a comparison pattern rejected ``PROPAGATE_AFTER`` times
and never approved is rejected for every pending pair that has it (the propagation the product
does on decisions). After each answer the queue is rebuilt from the current clusters, so one answer
settles every record pair between the two profiles.

Prints one JSON object per file: for each checkpoint, precision / recall / F1 over record pairs,
pending questions, and the profiles a capped queue (``--share`` of the records) puts in front of people.
"""

from __future__ import annotations

import argparse
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


def pair_scores(labels, entity) -> dict:
    merged = sum(n * (n - 1) // 2 for n in Counter(labels).values())
    true = sum(n * (n - 1) // 2 for n in Counter(entity).values())
    hits = sum(n * (n - 1) // 2 for n in Counter(zip(labels, entity, strict=True)).values())
    precision = hits / merged if merged else 1.0
    recall = hits / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def simulate(path: Path, *, checkpoints: list[int], share: float) -> dict:
    import django

    django.setup()
    from profiles.identity.fuzzy import pipeline, review
    from profiles.identity.fuzzy.service import thresholds

    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    started = time.monotonic()
    table = pipeline.table_from_rows(rows)
    auto, threshold = thresholds()
    scored = pipeline.score_and_decide(table, pipeline.estimate(table), auto=auto, review=threshold)
    decisions = scored.decisions
    entity = [r["entity_id"] for r in rows]
    n = len(rows)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    members: dict[int, list[int]] = {}
    for cluster in decisions.clusters:
        root = cluster[0]
        for i in cluster:
            parent[i] = root
        members[root] = list(cluster)
    never: dict[int, set[int]] = {}
    verdicts = {"approved": Counter(), "rejected": Counter()}
    pending = [int(k) for k in decisions.review]
    patterns = {k: review.pattern(scored.levels[k]) for k in pending}

    def majority(root: int) -> str:
        return Counter(entity[i] for i in members.get(root, [root])).most_common(1)[0][0]

    def queue() -> list[tuple]:
        best: dict[tuple, tuple] = {}
        count: Counter = Counter()
        for k in pending:
            x, y = find(int(scored.a[k])), find(int(scored.b[k]))
            if x == y or y in never.get(x, ()):
                continue
            pat = patterns[k]
            if verdicts["rejected"][pat] >= review.PROPAGATE_AFTER and not verdicts["approved"][pat]:
                continue  # propagated rejection
            key = (min(x, y), max(x, y))
            count[key] += 1
            p = float(scored.p[k])
            if key not in best or p > best[key][2]:
                doubt = 1.0 if k in decisions.refused else review.uncertainty(p)
                best[key] = (key[0], key[1], p, 0, doubt, k)
        return [(x, y, p, count[(x, y)], doubt, k) for (x, y), (_, _, p, _, doubt, k) in best.items()]

    out = {"file": path.stem, "records": n, "share": share, "checkpoints": []}
    answered = 0
    last = max(checkpoints)
    while True:
        groups = queue()
        if answered in checkpoints:
            labels = [find(i) for i in range(n)]
            capped = review.select(groups, records=n, share=share)
            out["checkpoints"].append(
                {
                    "answers": answered,
                    **pair_scores(labels, entity),
                    "pending_questions": len(groups),
                    "profiles_in_capped_queue": len({p for g in capped for p in g[:2]}),
                    "share_in_capped_queue": round(len({p for g in capped for p in g[:2]}) / n, 4),
                }
            )
        if answered >= last or not groups:
            break
        x, y, _, _, _, k = min(groups, key=lambda g: (-g[4], -g[3], -g[2]))
        same = majority(x) == majority(y)
        verdicts["approved" if same else "rejected"][patterns[k]] += 1
        if same:
            parent[y] = x
            members[x] = members.get(x, [x]) + members.pop(y, [y])
            gone = never.pop(y, set())
            never.setdefault(x, set()).update(gone)
            for other in gone:
                never.setdefault(other, set()).discard(y)
                never[other].add(x)
        else:
            never.setdefault(x, set()).add(y)
            never.setdefault(y, set()).add(x)
        answered += 1
    out["seconds"] = round(time.monotonic() - started, 1)
    out["answers_given"] = answered
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--answers", default="0,50,200")
    parser.add_argument("--share", type=float, default=0.02)
    args = parser.parse_args()
    checkpoints = sorted({int(x) for x in args.answers.split(",")})
    for name in args.files:
        print(json.dumps(simulate(Path(name), checkpoints=checkpoints, share=args.share)), flush=True)


if __name__ == "__main__":
    main()
