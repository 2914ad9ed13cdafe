"""``manage.py evaluate_identity FILE``: identity resolution quality on a labelled person file (PROTOCOL.md I).

Every record goes in as one ``identify`` call through the ingestion service (so deterministic
resolution links what shares an email or phone, as in production), then the probabilistic job's
service ``identity_match`` runs over all profiles with the configured thresholds. The result is
scored over record pairs against ``entity_id`` (which the matcher never reads). Everything happens
in one transaction that is rolled back: the database is left as it was.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from profiles.identity.fuzzy import identity_match
from profiles.models import CandidateStatus, MatchCandidate, Profile
from profiles.services import events_ingest, source_create
from profiles.tracking.validate import Invalid, clean_event

REQUIRED = ("record_id", "entity_id")
BATCH = 500
ADDRESS_COLUMNS = ("street", "city", "postal_code", "state")


class _RollBack(Exception):
    """Raised at the end of the evaluation to undo everything it wrote."""


def record_payload(row: dict, index: int, anonymous_id: str, at) -> dict:
    """The identify call a shop would send for this record (empty columns are left out)."""

    def value(column: str) -> str:
        return (row.get(column) or "").strip()

    traits = {key: value(key) for key in ("first_name", "last_name", "email", "phone") if value(key)}
    address = {key: value(key) for key in ADDRESS_COLUMNS if value(key)}
    if address:
        traits["address"] = address
    if value("birth_date"):
        traits["birthday"] = value("birth_date")
    return {
        "type": "identify",
        "anonymousId": anonymous_id,
        "messageId": f"evaluate-identity-{index}",
        "traits": traits,
        "timestamp": at.isoformat(),
    }


def pair_count(groups: Counter, cross: dict | None = None) -> int:
    """Pairs inside groups; with ``cross`` (group -> Counter of sources), only pairs across sources."""
    if cross is None:
        return sum(n * (n - 1) // 2 for n in groups.values())
    return sum((n * n - sum(c * c for c in cross[g].values())) // 2 for g, n in groups.items())


class Command(BaseCommand):
    help = (
        "Evaluate identity resolution on a person CSV (PROTOCOL.md section I: record_id, entity_id, first_name, "
        "last_name, email, phone, street, city, postal_code, state, birth_date; any but the first two may be empty). "
        "Each record is ingested as an identify call, then the fuzzy matching job runs with the configured "
        "thresholds; precision, recall and F1 over record pairs are printed as one JSON object on stdout. "
        "Runs inside one database transaction that is rolled back at the end: nothing is left behind."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="person CSV with a header row")
        parser.add_argument(
            "--link-on-source",
            action="store_true",
            help="the CSV has a 'source' column: score only pairs across sources (linking two files)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")

    def handle(self, *args, **options):
        path = Path(options["file"])
        rows = self._read(path, link_on_source=options["link_on_source"])
        started = time.monotonic()
        outcome: dict = {}
        try:
            with transaction.atomic():
                outcome = self._evaluate(rows, progress=not options["no_progress"])
                raise _RollBack
        except _RollBack:
            pass
        result = self._score(rows, outcome, link_on_source=options["link_on_source"])
        result = {"dataset": path.stem, **result, "seconds": round(time.monotonic() - started, 2)}
        report = outcome["report"]
        self.stderr.write(f"matching: {report.line()}")
        self.stderr.write(f"refusals: {json.dumps(report.refusals, sort_keys=True)}")
        self._parameters_table(report.parameters)
        self.stdout.write(json.dumps(result))

    # --- input --------------------------------------------------------------------------------------

    def _read(self, path: Path, *, link_on_source: bool) -> list[dict]:
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                columns = [c.strip() for c in reader.fieldnames or []]
                required = REQUIRED + (("source",) if link_on_source else ())
                missing = [c for c in required if c not in columns]
                if missing:
                    raise CommandError(f"{path} lacks the required column(s): {', '.join(missing)}")
                return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"{path} is not a readable CSV: {exc}") from exc

    # --- the run ------------------------------------------------------------------------------------

    def _evaluate(self, rows: list[dict], *, progress: bool) -> dict:
        source, _ = source_create(name=f"evaluate-identity-{uuid.uuid4().hex[:12]}")
        ids = Counter(r["record_id"] for r in rows)
        run = source.name.rsplit("-", 1)[-1]  # anonymous ids of this run cannot meet real ones
        now = timezone.now()
        base = now - timedelta(seconds=len(rows) + 1)
        record_profiles: list = []
        with (
            tqdm(total=len(rows), unit="rec", desc="ingest", disable=not progress, file=self.stderr) as bar,
        ):
            for begin in range(0, len(rows), BATCH):
                events = []
                for index in range(begin, min(begin + BATCH, len(rows))):
                    row = rows[index]
                    record_id = row["record_id"].strip()
                    unique = record_id and ids[row["record_id"]] == 1
                    anonymous_id = f"eval-{run}:{record_id if unique else f'{record_id}#{index}'}"
                    payload = record_payload(row, index, anonymous_id, base + timedelta(seconds=index))
                    try:
                        events.append(clean_event(payload, received_at=now))
                    except Invalid as exc:
                        raise CommandError(f"record {record_id!r} (row {index + 2}): {exc.fields}") from exc
                # one private transaction, rolled back at the end: identifier locks would only pile up
                result = events_ingest(source=source, events=events, lock_identifiers=False)
                record_profiles.extend(result.event_profiles)
                bar.update(len(events))
        bar = tqdm(desc="match", disable=not progress, file=self.stderr)

        def tick(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        # the job over everyone the file's records became (other data in this database stays out of it)
        population = sorted({pid for pid in record_profiles if pid})
        report = identity_match(profile_ids=None, population=population, progress=tick, store_parameters=False)
        bar.close()
        survivor = dict(Profile.objects.filter(merged_into__isnull=False).values_list("pk", "merged_into_id"))

        def live(pid):
            seen = 0
            while pid in survivor and seen < 100:
                pid, seen = survivor[pid], seen + 1
            return str(pid)

        final = [live(uuid.UUID(pid)) if pid else None for pid in record_profiles]
        queued: set[str] = set()
        pending = MatchCandidate.objects.filter(status=CandidateStatus.PENDING).values_list("profile_a", "profile_b")
        for x, y in pending:
            lx, ly = live(x), live(y)
            if lx != ly:
                queued.update((lx, ly))
        return {"profiles": final, "queued": queued, "report": report}

    # --- scoring ------------------------------------------------------------------------------------

    def _score(self, rows: list[dict], outcome: dict, *, link_on_source: bool) -> dict:
        profiles = outcome["profiles"]
        entity = [r["entity_id"].strip() or f"\0unlabelled-{n}" for n, r in enumerate(rows)]
        sources = [r.get("source", "").strip() for r in rows]
        by_profile, by_entity, by_both = Counter(), Counter(), Counter()
        cross: dict[str, dict] = {"profile": {}, "entity": {}, "both": {}}
        for n in range(len(rows)):
            keys = {"profile": profiles[n], "entity": entity[n], "both": (profiles[n], entity[n])}
            for name, counter in (("profile", by_profile), ("entity", by_entity), ("both", by_both)):
                counter[keys[name]] += 1
                cross[name].setdefault(keys[name], Counter())[sources[n]] += 1
        merged = pair_count(by_profile, cross["profile"] if link_on_source else None)
        true = pair_count(by_entity, cross["entity"] if link_on_source else None)
        hits = pair_count(by_both, cross["both"] if link_on_source else None)
        precision = hits / merged if merged else 1.0
        recall = hits / true if true else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        self.stderr.write(f"pairs: merged {merged}, true {true}, correct {hits}")
        return {
            "records": len(rows),
            "true_pairs": true,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "review_queue": sum(1 for p in profiles if p in outcome["queued"]),
        }

    def _parameters_table(self, parameters: dict) -> None:
        if not parameters:
            return
        self.stderr.write(
            f"model: prior {parameters.get('prior')}, matches per record {parameters.get('matches_per_record')}, "
            f"labelled {parameters.get('labelled')}"
        )
        for name, levels in parameters.get("comparisons", {}).items():
            cells = "  ".join(
                f"{level} m={v['m']:.3f} u={v['u']:.2g} {v['bits']:+.1f}b"
                + (f" (h={v['h']:.2g} {v['household_bits']:+.1f}b)" if "h" in v else "")
                for level, v in levels.items()
            )
            self.stderr.write(f"  {name:<11} {cells}")
