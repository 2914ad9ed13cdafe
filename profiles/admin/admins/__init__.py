"""One module per admin of the profiles app (registered by ``profiles.admin.register_all_admin``)."""

from .event_admin import EventAdmin
from .intake_admin import IntakePartitionAdmin, IntakePoisonAdmin
from .match_candidate_admin import MatchCandidateAdmin
from .matching_run_admin import MatchingRunAdmin
from .merge_admin import MergeAdmin
from .profile_admin import ProfileAdmin
from .review_queue_admin import ReviewQueueAdmin
from .schema_admin import SchemaItemAdmin
from .source_admin import SourceAdmin

__all__ = [
    "EventAdmin",
    "IntakePartitionAdmin",
    "IntakePoisonAdmin",
    "MatchCandidateAdmin",
    "MatchingRunAdmin",
    "MergeAdmin",
    "ProfileAdmin",
    "ReviewQueueAdmin",
    "SchemaItemAdmin",
    "SourceAdmin",
]
