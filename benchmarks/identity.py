#!/usr/bin/env python
"""Benchmark: cdp's identity resolution beside recordlinkage (ECM) and splink (Fellegi-Sunter) on the same files.

    python benchmarks/identity.py [FILE ...] [--link-on-source] [--systems cdp,recordlinkage,splink]
                                  [--threshold 0.9] [--seed 42] [--cdp-timeout 3600]
                                  [--generate KIND:RECORDS:SEED ...]

``--generate`` adds generated files (``profiles/identity/fuzzy/synthetic.py``, written to
``benchmarks/results/``): ``many_records:50000:1`` (people with many noisy records each) or
``shops:6000:1`` (shop customers with households, twins, Jr./Sr., family mailboxes); repeat it for
several kinds and seeds. With ``--generate`` and no FILE only the generated files run.

FILE is any person CSV in the PROTOCOL.md (I) format (``record_id, entity_id, first_name, last_name, email,
phone, street, city, postal_code, state, birth_date``, any may be empty; a ``source`` column with
``--link-on-source``); by default the shared FEBRL files 1 and 2. For each file, in this one run:

1. cdp: ``manage.py evaluate_identity FILE`` in a new process (``DEBUG=true``; it ingests every record as an
   identify call and runs the fuzzy matching job inside a transaction that is rolled back), its JSON parsed;
2. recordlinkage: a standard setup. Candidate pairs from the union of standard blocks (last name, postcode,
   birth date, first name + city, and email / phone where the file has them); binary features (Jaro-Winkler
   >= 0.85 on first name, last name, street and city; exact on postcode, state, birth date, email, phone);
   the ``ECMClassifier`` (unsupervised EM); predicted links joined into clusters by connected components;
3. splink: Fellegi-Sunter on DuckDB in memory. Comparisons from its comparison library (``NameComparison``
   with term-frequency adjustments on names, ``DateOfBirthComparison``, ``JaroWinklerAtThresholds`` on
   street and city, exact postcode and state, ``EmailComparison``, exact phone); the same blocking keys for
   prediction; lambda from deterministic rules, u by random sampling (seeded), m by EM on two blocking rules;
   ``predict`` at match probability >= THRESHOLD, then ``cluster_pairwise_predictions_at_threshold``.

The peers see the same columns as cdp, never ``entity_id``: it is read only to score. Every system is scored
the same way as PROTOCOL.md says: over record pairs, a merged pair is two records that end in the same cluster
(profile); precision = true merged pairs / merged pairs, recall = true merged pairs / true pairs. With
``--link-on-source`` only pairs across sources count, and the peers link the sources (``link_only``).
Columns that are empty in the whole file are left out of the peers' models (they carry no evidence).

Seconds: cdp's are its own (ingestion + matching, after reading the file; Python start-up excluded); the
peers' are from the loaded DataFrame to the clusters (library imports excluded).

Prints a markdown table per file on stderr, and one JSON object with everything on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets" / "febrl"
DEFAULT_FILES = [DATASETS / "febrl1.csv", DATASETS / "febrl2.csv"]
COLUMNS = ("first_name", "last_name", "email", "phone", "street", "city", "postal_code", "state", "birth_date")
SYSTEMS = ("cdp", "recordlinkage", "splink")
JW_THRESHOLD = 0.85  # recordlinkage's string features are 1 at or above this Jaro-Winkler similarity
SPLINK_U_PAIRS = 1e7


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- input and scoring --------------------------------------------------------------------------------


def read_records(path: Path, *, link_on_source: bool):
    """The file as a DataFrame of strings, empty cells as missing (None), plus the ground truth apart."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.columns = [c.strip() for c in frame.columns]
    required = ["record_id", "entity_id"] + (["source"] if link_on_source else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path} lacks the required column(s): {', '.join(missing)}")
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    # what cdp's evaluate_identity scores: an unlabelled record is its own entity
    entity = [e.strip() or f"\0unlabelled-{n}" for n, e in enumerate(frame["entity_id"])]
    sources = [s.strip() for s in frame["source"]] if "source" in frame.columns else [""] * len(frame)
    # what the peers see: the person columns (trimmed, lower case), missing as None; never entity_id
    peer = pd.DataFrame({"unique_id": range(len(frame))})
    for column in COLUMNS:
        values = frame[column].str.strip().str.lower()
        peer[column] = values.where(values != "", None).astype(object)
    if link_on_source:
        peer["source_dataset"] = sources
    present = [c for c in COLUMNS if peer[c].notna().any()]
    return peer, entity, sources, present


def pair_count(groups: Counter, cross: dict | None) -> int:
    """Pairs inside groups; with ``cross`` (group -> Counter of sources), only pairs across sources."""
    if cross is None:
        return sum(n * (n - 1) // 2 for n in groups.values())
    return sum((n * n - sum(c * c for c in cross[g].values())) // 2 for g, n in groups.items())


def score(clusters: list, entity: list[str], sources: list[str], *, link_on_source: bool) -> dict:
    """Pair-level precision / recall / F1 of a clustering (one label per record) against the entities."""
    counters = {"cluster": Counter(), "entity": Counter(), "both": Counter()}
    cross: dict[str, dict] = {name: {} for name in counters}
    for n in range(len(entity)):
        keys = {"cluster": clusters[n], "entity": entity[n], "both": (clusters[n], entity[n])}
        for name, counter in counters.items():
            counter[keys[name]] += 1
            cross[name].setdefault(keys[name], Counter())[sources[n]] += 1
    merged, true, hits = (
        pair_count(counters[name], cross[name] if link_on_source else None) for name in ("cluster", "entity", "both")
    )
    return metrics(merged, true, hits)


def metrics(merged: int, true: int, hits: int) -> dict:
    precision = hits / merged if merged else 1.0
    recall = hits / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "merged_pairs": merged,
        "true_pairs": true,
        "correct_pairs": hits,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def pairwise_score(links, entity: list[str], sources: list[str], true_pairs: int, *, link_on_source: bool) -> dict:
    """The raw predicted links (before the transitive closure of clustering), scored as pairs."""
    seen = set()
    for a, b in links:
        a, b = int(a), int(b)
        if a == b or (link_on_source and sources[a] == sources[b]):
            continue
        seen.add((min(a, b), max(a, b)))
    hits = sum(1 for a, b in seen if entity[a] == entity[b])
    return metrics(len(seen), true_pairs, hits)


def components(count: int, links) -> list[int]:
    """Connected components of the link graph: a cluster label per record."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.asarray(list(links), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    return labels.tolist()


# --- cdp ----------------------------------------------------------------------------------------------


def cdp_python() -> str:
    """The project's interpreter for cdp's own run: the peers may live in another environment (their pins
    need pandas < 3, the product's has pandas 3), so the benchmark itself may run under that one."""
    own = REPO / ".venv" / "bin" / "python"
    return os.environ.get("CDP_PYTHON") or (str(own) if own.exists() else sys.executable)


def run_cdp(path: Path, *, link_on_source: bool, timeout: float) -> dict:
    env = {**os.environ, "DEBUG": "true"}
    command = [cdp_python(), "manage.py", "evaluate_identity", str(path), "--no-progress"]
    if link_on_source:
        command.append("--link-on-source")
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timed out after {timeout:.0f} s"}
    wall = round(time.perf_counter() - started, 2)
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"status": "failed", "returncode": proc.returncode, "error": " | ".join(tail)[-800:], "wall": wall}
    summary = [line for line in proc.stderr.splitlines() if line.startswith(("pairs:", "matching:"))]
    return {"status": "ok", **result, "wall_seconds": wall, "log": summary}


# --- recordlinkage ------------------------------------------------------------------------------------


def run_recordlinkage(peer, present: list[str], *, link_on_source: bool) -> dict:
    import recordlinkage

    started = time.perf_counter()
    frame = peer.set_index("unique_id")
    indexer = recordlinkage.Index()
    blocks = [("last_name",), ("postal_code",), ("birth_date",), ("first_name", "city"), ("email",), ("phone",)]
    blocks = [keys for keys in blocks if all(k in present for k in keys)]
    for keys in blocks:
        indexer.block(list(keys))
    if link_on_source:
        left = frame[frame["source_dataset"] == sorted(frame["source_dataset"].unique())[0]]
        right = frame[frame["source_dataset"] != left["source_dataset"].iloc[0]]
        candidates = indexer.index(left, right)
    else:
        left = right = frame
        candidates = indexer.index(frame)

    compare = recordlinkage.Compare()
    strings = [c for c in ("first_name", "last_name", "street", "city") if c in present]
    exact = [c for c in ("postal_code", "state", "birth_date", "email", "phone") if c in present]
    for column in strings:
        compare.string(column, column, method="jarowinkler", threshold=JW_THRESHOLD, label=column)
    for column in exact:
        compare.exact(column, column, label=column)
    features = compare.compute(candidates, left, right) if link_on_source else compare.compute(candidates, frame)
    # the ECM needs binary features; ours are (threshold on the strings, exact otherwise); a column that is
    # constant over the candidates (all 0 or all 1) carries no evidence and breaks its log-likelihoods
    features = features.loc[:, features.nunique() > 1]
    classifier = recordlinkage.ECMClassifier(binarize=None)
    links = classifier.fit_predict(features)
    pairs = [(int(a), int(b)) for a, b in links]
    clusters = components(len(peer), pairs)
    seconds = time.perf_counter() - started
    return {
        "status": "ok",
        "seconds": round(seconds, 2),
        "clusters": clusters,
        "links": pairs,
        "setup": {
            "blocks": [list(k) for k in blocks],
            "candidate_pairs": len(candidates),
            "features_jarowinkler_ge": dict.fromkeys(strings, JW_THRESHOLD),
            "features_exact": exact,
            "features_used": list(features.columns),
            "classifier": "ECMClassifier(binarize=None, init='jaro')",
            "predicted_links": len(pairs),
        },
    }


# --- splink -------------------------------------------------------------------------------------------


def run_splink(peer, present: list[str], *, link_on_source: bool, threshold: float, seed: int) -> dict:
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    started = time.perf_counter()
    # in memory, and never fetching a DuckDB extension at run time (everything used is built in)
    connection = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    db_api = DuckDBAPI(connection)

    comparisons = []
    for column in ("first_name", "last_name"):
        if column in present:
            comparisons.append(cl.NameComparison(column).configure(term_frequency_adjustments=True))
    if "birth_date" in present:
        comparisons.append(cl.DateOfBirthComparison("birth_date", input_is_string=True, datetime_format="%Y-%m-%d"))
    if "street" in present:
        comparisons.append(cl.JaroWinklerAtThresholds("street", [0.9, 0.7]))
    if "city" in present:
        comparisons.append(cl.JaroWinklerAtThresholds("city", [0.9]).configure(term_frequency_adjustments=True))
    for column in ("postal_code", "state", "phone"):
        if column in present:
            comparisons.append(cl.ExactMatch(column))
    if "email" in present:
        comparisons.append(cl.EmailComparison("email"))

    keys = [("last_name",), ("postal_code",), ("birth_date",), ("first_name", "city"), ("email",), ("phone",)]
    keys = [k for k in keys if all(c in present for c in k)]
    settings = SettingsCreator(
        link_type="link_only" if link_on_source else "dedupe_only",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=[block_on(*k) for k in keys],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    if link_on_source:
        tables = [
            db_api.register(part.drop(columns=["source_dataset"]), dataset_display_name=f"source_{n}")
            for n, (_, part) in enumerate(sorted(peer.groupby("source_dataset"), key=lambda item: item[0]))
        ]
        linker = Linker(tables, settings, log_level=None)
    else:
        linker = Linker(db_api.register(peer), settings, log_level=None)

    # lambda (prior) from deterministic rules, as in splink's tutorials
    deterministic = [k for k in (("first_name", "last_name", "birth_date"), ("email",)) if all(c in present for c in k)]
    if not deterministic:
        deterministic = [tuple(c for c in ("first_name", "last_name", "street") if c in present)]
    linker.training.estimate_probability_two_random_records_match([block_on(*k) for k in deterministic], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=SPLINK_U_PAIRS, seed=seed)
    training = [("first_name", "last_name"), ("birth_date",), ("postal_code",)]
    training = [k for k in training if all(c in present for c in k)]
    for rule in training[:2]:
        linker.training.estimate_parameters_using_expectation_maximisation(block_on(*rule))
    predictions = linker.inference.predict(threshold_match_probability=threshold)
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
    edges = predictions.as_pandas_dataframe()
    cluster_frame = clustered.as_pandas_dataframe()
    seconds = time.perf_counter() - started

    label = dict(zip(cluster_frame["unique_id"].astype(int), cluster_frame["cluster_id"].astype(str), strict=True))
    clusters = [label.get(n, f"single-{n}") for n in range(len(peer))]
    pairs = [(int(a), int(b)) for a, b in zip(edges["unique_id_l"], edges["unique_id_r"], strict=True)]
    connection.close()
    return {
        "status": "ok",
        "seconds": round(seconds, 2),
        "clusters": clusters,
        "links": pairs,
        "setup": {
            "comparisons": [c.get_comparison("duckdb").output_column_name for c in comparisons],
            "blocking_rules_to_generate_predictions": [list(k) for k in keys],
            "lambda_from_deterministic_rules": [list(k) for k in deterministic] + ["recall=0.7"],
            "u_random_sampling": {"max_pairs": SPLINK_U_PAIRS, "seed": seed},
            "em_blocking_rules": [list(k) for k in training[:2]],
            "threshold_match_probability": threshold,
            "predicted_links": len(pairs),
        },
    }


# --- report -------------------------------------------------------------------------------------------


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    match = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    info["memory"] = f"{int(match.group(1)) / 1024 / 1024:.0f} GiB" if match else "?"
    info["load_average"] = round(os.getloadavg()[0], 2)
    try:
        sys.path.insert(0, str(REPO))
        import psycopg

        from cdp.envfiles import load_env_files

        load_env_files()
        url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp")
        with psycopg.connect(url, connect_timeout=5) as conn:
            info["postgres"] = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    except Exception as exc:  # the machine line is informative only
        info["postgres"] = f"unknown ({type(exc).__name__})"
    versions = {}
    for name in ("recordlinkage", "splink", "pandas", "duckdb", "jellyfish"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed
            versions[name] = None
    info["versions"] = versions
    return info


def table(name: str, records: int, true_pairs: int, rows: dict) -> str:
    lines = [
        f"**{name}** ({records:,} records, {true_pairs:,} true pairs)",
        "",
        "| system | precision | recall | F1 | seconds | sent to review |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for system, row in rows.items():
        if row.get("status") != "ok":
            lines.append(f"| {system} | pending | | | | {row.get('error', '')[:100]} |")
            continue
        review = row.get("review_queue")
        lines.append(
            f"| {system} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['seconds']:.2f} "
            f"| {'' if review is None else f'{review:,}'} |"
        )
    return "\n".join(lines)


def generate(spec: str, parser) -> Path:
    """Write a generated identity CSV (PROTOCOL.md I) for ``KIND:RECORDS:SEED`` and return its path."""
    try:
        kind, records, seed = spec.split(":")
        records, seed = int(records), int(seed)
    except ValueError:
        parser.error(f"--generate {spec!r}: expected KIND:RECORDS:SEED, e.g. many_records:50000:1")
    sys.path.insert(0, str(REPO))
    from profiles.identity.fuzzy import synthetic

    if kind not in synthetic.GENERATORS:
        parser.error(f"--generate {spec!r}: KIND is one of {', '.join(synthetic.GENERATORS)}")
    if kind == "shops":  # people() counts people: about 1.45 records each
        rows = synthetic.shops(max(1, round(records / 1.45)), seed=seed)
    else:
        rows = synthetic.many_records(records, seed=seed)
    path = REPO / "benchmarks" / "results" / f"{kind}_{records}_seed{seed}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic.write_csv(path, rows)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", default=[str(f) for f in DEFAULT_FILES], help="person CSV files")
    parser.add_argument("--link-on-source", action="store_true", help="'source' column: score cross-source pairs")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--threshold", type=float, default=0.9, help="splink match probability (default 0.9)")
    parser.add_argument("--seed", type=int, default=42, help="seed for splink's u sampling")
    parser.add_argument("--cdp-timeout", type=float, default=3600, help="seconds before cdp's run is given up")
    parser.add_argument(
        "--generate", action="append", default=[], metavar="KIND:RECORDS:SEED", help="add a generated file"
    )
    args = parser.parse_args()
    if args.generate:
        generated = [str(generate(spec, parser)) for spec in args.generate]
        explicit = [f for f in args.files if f not in {str(x) for x in DEFAULT_FILES}]
        args.files = explicit + generated
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")

    report = {"machine": machine(), "link_on_source": args.link_on_source, "files": []}
    for file in args.files:
        path = Path(file)
        if not path.is_file():
            raise SystemExit(f"No such file: {path}")
        peer, entity, sources, present = read_records(path, link_on_source=args.link_on_source)
        truth = score(list(range(len(entity))), entity, sources, link_on_source=args.link_on_source)
        true_pairs = truth["true_pairs"]
        rows: dict[str, dict] = {}
        for system in systems:
            log(f"{path.stem}: {system} ...")
            if system == "cdp":
                rows[system] = run_cdp(path, link_on_source=args.link_on_source, timeout=args.cdp_timeout)
                continue
            try:
                if system == "recordlinkage":
                    outcome = run_recordlinkage(peer, present, link_on_source=args.link_on_source)
                else:
                    outcome = run_splink(
                        peer, present, link_on_source=args.link_on_source, threshold=args.threshold, seed=args.seed
                    )
            except Exception as exc:  # one peer failing must not hide the others
                rows[system] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                continue
            clusters, links = outcome.pop("clusters"), outcome.pop("links")
            rows[system] = {
                **outcome,
                **score(clusters, entity, sources, link_on_source=args.link_on_source),
                "pairwise": pairwise_score(links, entity, sources, true_pairs, link_on_source=args.link_on_source),
            }
        for system, row in rows.items():
            if row.get("status") == "ok":
                log(f"  {system}: P {row['precision']} R {row['recall']} F1 {row['f1']} in {row['seconds']} s")
            else:
                log(f"  {system}: FAILED {row.get('error')}")
        peers_f1 = [rows[s]["f1"] for s in rows if s != "cdp" and rows[s].get("status") == "ok"]
        cdp_ok = rows.get("cdp", {}).get("status") == "ok"
        ratio = round(rows["cdp"]["f1"] / max(peers_f1), 4) if cdp_ok and peers_f1 and max(peers_f1) else None
        entry = {
            "dataset": path.stem,
            "file": str(path),
            "records": len(entity),
            "true_pairs": true_pairs,
            "columns_present": present,
            "systems": rows,
            "cdp_f1_over_best_peer_f1": ratio,
            "cdp_beats_every_peer": (all(rows["cdp"]["f1"] > f for f in peers_f1) if cdp_ok and peers_f1 else None),
        }
        report["files"].append(entry)
        log("")
        log(table(path.stem, len(entity), true_pairs, rows))
        log("")
        best = max(((s, r["f1"]) for s, r in rows.items() if s != "cdp" and r.get("status") == "ok"), default=None)
        if ratio is not None:
            log(f"cdp F1 / best peer F1 ({best[0]} {best[1]:.4f}): {ratio:.4f}")
        elif "cdp" in rows:
            log("cdp F1 / best peer F1: pending (cdp's row did not run)")
        log("")
    m = report["machine"]
    log(
        f"Machine: {m['cpus']} CPUs, {m['memory']} RAM, {m['postgres']}, Python {m['python']}, "
        f"load average {m['load_average']}; versions {json.dumps(m['versions'])}"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
