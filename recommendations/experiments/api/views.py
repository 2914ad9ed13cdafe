"""/api/v1/experiments/ (CRUD, start/stop/ship, results, assignment) and /api/v1/bandits/ (secret key)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from recommendations.experiments import selectors, services
from recommendations.experiments.models import BanditPolicy, Experiment

from .serializers import (
    AssignmentOutput,
    AssignmentQueryInput,
    BanditInput,
    BanditOutput,
    ExperimentInput,
    ExperimentOutput,
    ExperimentPatchInput,
    PowerInput,
    ResultsOutput,
    ShipInput,
)


def _invalid(exc: services.ExperimentInvalid) -> serializers.ValidationError:
    return serializers.ValidationError(exc.errors)


def _by(request) -> str:
    key = getattr(request, "auth", None)
    return f"api:{getattr(key, 'name', 'key')}"


class ExperimentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Experiments on serving strategies: create (a draft), edit, start, stop, ship, results."""

    queryset = Experiment.objects.prefetch_related("variants").order_by("-created_at")
    serializer_class = ExperimentOutput
    lookup_field = "key"
    lookup_value_regex = "[-a-zA-Z0-9_]+"

    @extend_schema(request=ExperimentInput, responses={201: ExperimentOutput})
    def create(self, request):
        """Create a draft. 400 with field messages for weights that do not sum to 100, an unknown
        placement, a layer share overlapping a running experiment of the same layer."""
        data = ExperimentInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        try:
            experiment = services.experiment_create(by=_by(request), **values)
        except services.ExperimentInvalid as exc:
            raise _invalid(exc) from None
        return Response(ExperimentOutput(experiment).data, status=201)

    @extend_schema(request=ExperimentPatchInput, responses={200: ExperimentOutput})
    def partial_update(self, request, key: str):
        """Edit a draft; while it runs only names, the hypothesis, guardrails and variant weights (a
        weight change moves only the buckets it must). A stopped or shipped experiment: 400."""
        experiment = self.get_object()
        data = ExperimentPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        try:
            experiment = services.experiment_update(experiment=experiment, by=_by(request), **values)
        except services.ExperimentInvalid as exc:
            raise _invalid(exc) from None
        return Response(ExperimentOutput(Experiment.objects.get(pk=experiment.pk)).data)

    def destroy(self, request, key: str):
        """Delete a draft (400 otherwise)."""
        try:
            services.experiment_delete(experiment=self.get_object())
        except services.ExperimentInvalid as exc:
            raise _invalid(exc) from None
        return Response(status=204)

    @extend_schema(request=None, responses={200: ExperimentOutput})
    @action(detail=True, methods=["post"])
    def start(self, request, key: str):
        try:
            experiment = services.experiment_start(experiment=self.get_object(), by=_by(request))
        except services.ExperimentInvalid as exc:
            raise _invalid(exc) from None
        return Response(ExperimentOutput(experiment).data)

    @extend_schema(request=None, responses={200: ExperimentOutput})
    @action(detail=True, methods=["post"])
    def stop(self, request, key: str):
        try:
            experiment = services.experiment_stop(experiment=self.get_object(), by=_by(request))
        except services.ExperimentInvalid as exc:
            raise _invalid(exc) from None
        return Response(ExperimentOutput(experiment).data)

    @extend_schema(request=ShipInput, responses={200: ExperimentOutput})
    @action(detail=True, methods=["post"])
    def ship(self, request, key: str):
        """Serve one variant to everybody on the experiment's placements."""
        data = ShipInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            experiment = services.experiment_ship(
                experiment=self.get_object(), variant=data.validated_data["variant"], by=_by(request)
            )
        except services.ExperimentInvalid as exc:
            raise _invalid(exc) from None
        return Response(ExperimentOutput(experiment).data)

    @extend_schema(responses={200: ResultsOutput})
    @action(detail=True, methods=["get"])
    def results(self, request, key: str):
        """Results now: exposures refreshed from the served log, metrics per variant, lift with its
        (sequential by default) interval, p-value, chance to beat control, Holm-adjusted p-values, SRM."""
        experiment = self.get_object()
        return Response(selectors.experiment_results(experiment=experiment, refresh=True))

    @extend_schema(parameters=[PowerInput], responses={200: OpenApiTypes.OBJECT})
    @action(detail=False, methods=["get"])
    def power(self, request):
        """Power calculator (fixed horizon, two-sided, equal split): units per variant and days for a
        minimum detectable effect, or the MDE for a number of units. The sequential default needs about
        2-3x the units for the same power (docs/experiments.md)."""
        from recommendations.experiments.statistics import power_plan

        data = PowerInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        try:
            return Response(power_plan(**data.validated_data))
        except (ValueError, ArithmeticError) as exc:  # figures valid one by one, meaningless together
            raise serializers.ValidationError({"baseline_mean": [str(exc)]}) from None

    @extend_schema(parameters=[AssignmentQueryInput], responses={200: AssignmentOutput})
    @action(detail=False, methods=["get"])
    def assignment(self, request):
        """The strategy a shopper gets on a placement (for storefront features other than the
        recommendations API). Does not record an exposure: exposures come from what was served."""
        from recommendations import serving

        data = AssignmentQueryInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            profile_id, consent, strategy = selectors.shopper_strategy(
                profile_id=str(values["profile_id"]) if values.get("profile_id") else None,
                user_id=values.get("user_id"),
                anonymous_id=values.get("anonymous_id"),
                placement=values["placement"],
                device=values.get("device", ""),
            )
        except serving.UnknownProfile:
            from django.http import Http404

            raise Http404 from None
        return Response(
            {
                "profile_id": profile_id,
                "placement": values["placement"],
                **{f: getattr(strategy, f) for f in ("experiment", "variant", "policy", "propensity")},
                "personalised": strategy.personalised and consent,
                "model_version": strategy.model_version,
                "rerank": strategy.rerank,
                "rule_set": strategy.rule_set,
            }
        )


class BanditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Bandit policies: Thompson sampling across strategies per context; off-policy evaluation."""

    queryset = BanditPolicy.objects.all()
    serializer_class = BanditOutput
    lookup_field = "key"
    lookup_value_regex = "[-a-zA-Z0-9_]+"

    @extend_schema(request=BanditInput, responses={201: BanditOutput})
    def create(self, request):
        data = BanditInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            policy = services.bandit_create(**data.validated_data)
        except services.ExperimentInvalid as exc:
            raise _invalid(exc) from None
        return Response(BanditOutput(policy).data, status=201)

    @extend_schema(request=None, responses={200: BanditOutput})
    @action(detail=True, methods=["post"])
    def stop(self, request, key: str):
        policy = services.bandit_set_status(policy=self.get_object(), status="stopped")
        return Response(BanditOutput(policy).data)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def evaluation(self, request, key: str):
        """The live policy's observed click rate beside IPS, SNIPS and doubly robust estimates of
        candidate policies, from the logged propensities."""
        from recommendations.experiments.bandits import policy_evaluation

        return Response(policy_evaluation(policy_id=self.get_object().pk))
