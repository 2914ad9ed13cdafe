"""Paginators shared by the profiles admin (and other apps' admins of large tables)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows (``SELECT count(*) FROM (... LIMIT cap+1)``), never the whole table.

    Past the cap the list says "10000+" and offers the first ``cap`` rows; filters narrow the rest.
    """

    cap = 10_000
    capped = False

    @cached_property
    def count(self) -> int:
        counted = self.object_list.order_by().values("pk")[: self.cap + 1].count()  # no annotations, no joins
        self.capped = counted > self.cap
        return min(counted, self.cap)
