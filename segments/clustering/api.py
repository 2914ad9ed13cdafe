"""The clustering API (secret key): runs (start, progress, report) and decisions on proposed segments.

    GET  /api/v1/clustering-runs/               recent runs (status, progress, chosen model)
    POST /api/v1/clustering-runs/               start a run (optional params); 202, queued on commit
    GET  /api/v1/clustering-runs/{id}/          one run with its report and its proposed segments
    POST /api/v1/cluster-segments/{slug}/accept/   a proposal becomes an active segment
    POST /api/v1/cluster-segments/{slug}/dismiss/  a proposal is dismissed (members leave)

Registered by ``segments/api/routes.py`` (``register``). Every write goes through
``segments.clustering.services``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from profiles.api.tracking import ErrorResponse
from segments.models import ClusteringRun, Segment, SegmentKind

from .engine import ALGORITHMS, ClusteringError
from .services import ClusterDecisionError, cluster_segment_accept, cluster_segment_dismiss, clustering_run_start

RECENT_RUNS = 50


class ProposalOutput(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="proposed, active (accepted) or dismissed")
    cluster_profile = serializers.DictField(read_only=True, help_text="size, share, description, medians, z-scores")

    class Meta:
        model = Segment
        fields = ["slug", "name", "status", "cluster_label", "size", "cluster_profile"]
        read_only_fields = fields


class ClusteringRunOutput(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="queued, running, done or failed")
    chosen = serializers.DictField(read_only=True, help_text="algorithm, k and metrics of the chosen model")

    class Meta:
        model = ClusteringRun
        fields = [
            "id",
            "status",
            "requested_by",
            "params",
            "progress",
            "progress_message",
            "population",
            "chosen",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ClusteringRunDetailOutput(ClusteringRunOutput):
    report = serializers.DictField(read_only=True, help_text="every algorithm's figures, every k, the clusters")
    segments = serializers.SerializerMethodField()

    class Meta(ClusteringRunOutput.Meta):
        fields = [*ClusteringRunOutput.Meta.fields, "report", "segments"]
        read_only_fields = fields

    @extend_schema_field(ProposalOutput(many=True))
    def get_segments(self, run: ClusteringRun) -> list[dict]:
        segments = run.segments.filter(kind=SegmentKind.CLUSTER).order_by("cluster_label")
        return ProposalOutput(segments, many=True).data


class ClusteringRunInput(serializers.Serializer):
    algorithms = serializers.ListField(
        child=serializers.ChoiceField(choices=ALGORITHMS), required=False, allow_empty=False
    )
    k_min = serializers.IntegerField(required=False, min_value=2, max_value=50)
    k_max = serializers.IntegerField(required=False, min_value=2, max_value=50)
    min_share = serializers.FloatField(required=False, min_value=0, max_value=0.5)
    bootstrap = serializers.IntegerField(required=False, min_value=2, max_value=20)
    tolerance = serializers.FloatField(required=False, min_value=0, max_value=0.99)
    top_categories = serializers.IntegerField(required=False, min_value=0, max_value=30)
    seed = serializers.IntegerField(required=False, min_value=0)


def _actor(request) -> str:
    auth = request.auth
    if auth is not None and hasattr(auth, "name"):
        return f"api:{auth.name}"
    return getattr(getattr(request, "user", None), "username", "") or "api"


class ClusteringRunViewSet(viewsets.GenericViewSet):
    """Clustering runs: start one, follow its progress, read its report and proposals."""

    serializer_class = ClusteringRunOutput
    pagination_class = None

    def get_queryset(self):
        return ClusteringRun.objects.order_by("-created_at", "-pk")

    @extend_schema(responses={200: ClusteringRunOutput(many=True)})
    def list(self, request):
        """The most recent runs, newest first."""
        return Response(ClusteringRunOutput(self.get_queryset()[:RECENT_RUNS], many=True).data)

    @extend_schema(responses={200: ClusteringRunDetailOutput, 404: ErrorResponse})
    def retrieve(self, request, pk: str | None = None):
        """One run with its report and the segments it proposed."""
        return Response(ClusteringRunDetailOutput(self.get_object()).data)

    @extend_schema(request=ClusteringRunInput, responses={202: ClusteringRunOutput, 400: ErrorResponse})
    def create(self, request):
        """Start a run (queued for the ml worker). A run already queued or running is returned instead."""
        data = ClusteringRunInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = clustering_run_start(requested_by=_actor(request), params=dict(data.validated_data))
        except ClusteringError as exc:
            raise serializers.ValidationError({"params": [str(exc)]}) from exc
        return Response(ClusteringRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class ClusterSegmentViewSet(viewsets.GenericViewSet):
    """The admin's decisions on proposed cluster segments."""

    serializer_class = ProposalOutput
    lookup_field = "slug"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    pagination_class = None

    def get_queryset(self):
        return Segment.objects.filter(kind=SegmentKind.CLUSTER)

    def _decide(self, request, decide) -> Response:
        try:
            segment = decide(segment=self.get_object(), actor=_actor(request))
        except ClusterDecisionError as exc:
            raise serializers.ValidationError({"status": [str(exc)]}) from exc
        return Response(ProposalOutput(segment).data)

    @extend_schema(request=None, responses={200: ProposalOutput, 400: ErrorResponse, 404: ErrorResponse})
    @action(detail=True, methods=["post"])
    def accept(self, request, slug: str | None = None):
        """Accept a proposed cluster segment: it becomes active, with the members it was proposed with."""
        return self._decide(request, cluster_segment_accept)

    @extend_schema(request=None, responses={200: ProposalOutput, 400: ErrorResponse, 404: ErrorResponse})
    @action(detail=True, methods=["post"])
    def dismiss(self, request, slug: str | None = None):
        """Dismiss a proposed cluster segment: its members leave it."""
        return self._decide(request, cluster_segment_dismiss)
