"""Full refresh of rule segments from the command line (what the schedule runs), with progress."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from segments import services
from segments.models import Segment, SegmentKind


class Command(BaseCommand):
    help = "Refresh the members of rule segments now (all active ones, or those named)."

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", help="segment slugs (default: every active rule segment)")
        parser.add_argument("--time-based-only", action="store_true", help="only segments with time-relative rules")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, slugs: list[str], time_based_only: bool, no_progress: bool, **options) -> None:
        if slugs:
            segments = list(Segment.objects.filter(slug__in=slugs).order_by("pk"))
            missing = sorted(set(slugs) - {s.slug for s in segments})
            if missing:
                raise CommandError(f"No such segment: {', '.join(missing)}.")
            clusters = [s.slug for s in segments if s.kind != SegmentKind.RULE]
            if clusters:
                raise CommandError(f"Cluster segments are not rule-evaluated: {', '.join(clusters)}.")
            for segment in tqdm(segments, desc="refreshing", disable=no_progress):
                entered, exited = services.segment_refresh(segment=segment)
                self.stdout.write(f"{segment.slug}: {entered} entered, {exited} exited, {segment.size} members")
            return
        bar = tqdm(desc="refreshing", unit="segment", disable=no_progress)
        done = services.segments_refresh_all(time_based_only=time_based_only, progress=lambda n: bar.update(1))
        bar.close()
        self.stdout.write(f"refreshed {done} segment(s)")
