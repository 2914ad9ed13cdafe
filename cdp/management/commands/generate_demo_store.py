from django.core.management.base import BaseCommand, CommandError

from cdp.demo.store import IDENTITY_CASES, DemoSummary, demo_store_generate


class Command(BaseCommand):
    help = (
        "Simulate a shop (catalog, customers of several behaviour types, sessions on phones, desktops and tablets) "
        "and send its events through ingestion under the 'demo-store' source. Deterministic for a seed: running "
        "it again with the same arguments adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=300, help="simulated people (default 300)")
        parser.add_argument("--days", type=int, default=60, help="days of history up to now (default 60)")
        parser.add_argument("--seed", type=int, default=42, help="random seed; same seed, same events (default 42)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def handle(self, *args, customers: int, days: int, seed: int, no_progress: bool, **options):
        if customers < 1:
            raise CommandError(f"--customers must be at least 1 (got {customers}).")
        if days < 1:
            raise CommandError(f"--days must be at least 1 (got {days}).")
        try:
            summary = demo_store_generate(customers=customers, days=days, seed=seed, progress=not no_progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(render_summary(summary))


def render_summary(summary: DemoSummary) -> str:
    lines = [
        f"Demo store: {summary.customers} customers, {summary.days} days, seed {summary.seed} "
        f"({summary.seconds:.1f} s)",
        f"Events sent {summary.events_sent}, stored {summary.events_accepted}, "
        f"already there {summary.events_duplicate}; computed traits for {summary.traits_computed} profiles.",
    ]

    def table(title: str, rows: dict[str, int]) -> None:
        lines.append("")
        lines.append(title)
        width = max((len(k) for k in rows), default=10)
        for key, value in rows.items():
            lines.append(f"  {key:<{width}}  {value:>8}")
        if not rows:
            lines.append("  (none)")

    table("Customers by behaviour", summary.behaviours)
    table("Customers by identity case", summary.identity_cases)
    table("Events stored for demo-store, by type and name", summary.events_by_kind)
    table("Events by device type", summary.events_by_device)
    table(
        "Profiles",
        {
            "live profiles with demo-store events": summary.profiles,
            "merged away (whole database)": summary.profiles_merged_away,
        },
    )
    table("Merges by status and reason (whole database, not undone)", summary.merges)
    table("Match candidates by status and reason (whole database)", summary.match_candidates)
    lines.append("")
    lines.append("Identity cases simulated:")
    lines.extend(f"  {case}" for case in IDENTITY_CASES)
    return "\n".join(lines)
