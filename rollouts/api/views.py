"""The rollouts API: start canaries, experiments and shadows, watch them, steer them.

Every signed-in user reads; starting and steering a model's rollouts needs
`can_maintain` on the model. A request made with an API key limited to some models
sees only their rollouts (`registry.api.permissions.models_in_scope`): the others
answer 404, and a start names an out-of-scope model as it would an unknown one.
Views stay thin: they check, validate and call
`rollouts.services`; a refused transition (`services.RolloutError`) is a 400
with the service's message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.api.permissions import models_in_scope
from registry.models import RegisteredModel
from registry.permissions import can_maintain
from rollouts import services
from rollouts.analysis import analyze_canary
from rollouts.api.serializers import (
    START_SERIALIZERS,
    AbortSerializer,
    AnalysisSerializer,
    CanaryStartSerializer,
    ExperimentStartSerializer,
    PromoteSerializer,
    RolloutSerializer,
    ShadowStartSerializer,
)
from rollouts.models import ACTIVE, Rollout, RolloutKind, RolloutStatus


class Refused(exceptions.APIException):
    """A change the rollout service refused (`services.RolloutError`)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The rollout service refused this request."
    default_code = "refused"


def refusal(exc: services.RolloutError) -> dict[str, Any]:
    """DRF's error shape for a refused start: the message as `detail`, and under the field
    at fault when there is one (as a serializer's field error would be)."""
    message = str(exc)
    return {"detail": message, exc.field: [message]} if exc.field else {"detail": message}


def not_a_maintainer(model: RegisteredModel) -> str:
    return (
        f"Only maintainers of model '{model.name}' may start or steer its rollouts; "
        "ask its owner or an admin to add you as a maintainer."
    )


class CanMaintainRolloutModel(BasePermission):
    """Anyone signed in reads; changing a rollout needs `can_maintain` on its model.
    (Starting one is checked by the view, once it knows the model.)"""

    message = "You do not have permission to change this rollout."

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if not can_maintain(request.user, obj.model):
            self.message = not_a_maintainer(obj.model)
            return False
        return True


ErrorSerializer = inline_serializer("RolloutError", fields={"detail": serializers.CharField()})
ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT, description="Invalid input (field → messages), or a refused transition (`detail`)."
    ),
    403: OpenApiResponse(ErrorSerializer, description="Not signed in, or not a maintainer of the model."),
    404: OpenApiResponse(ErrorSerializer, description="No such rollout."),
}
START_REQUEST = PolymorphicProxySerializer(
    component_name="RolloutStart",
    serializers={
        "canary": CanaryStartSerializer,
        "experiment": ExperimentStartSerializer,
        "shadow": ShadowStartSerializer,
    },
    resource_type_field_name="kind",
)
FILTERS = {
    "model": "Only rollouts of the model with this name.",
    "status": f"Only rollouts in this status: {', '.join(RolloutStatus.values)}, or `active` (running or paused).",
    "kind": f"Only rollouts of this kind: {', '.join(RolloutKind.values)}.",
}


def _action_schema(summary: str, description: str, request: Any = None) -> Callable[[Any], Any]:
    return extend_schema(
        summary=summary,
        description=description,
        request=request,
        responses={200: RolloutSerializer, **ERRORS},
    )


@extend_schema_view(
    list=extend_schema(
        summary="List rollouts, newest first",
        parameters=[OpenApiParameter(name, OpenApiTypes.STR, description=text) for name, text in FILTERS.items()],
    ),
    retrieve=extend_schema(
        summary="Show a rollout with its live report",
        description="Per arm: requests, error rate and latency percentiles since it began; for a canary the "
        "gates against their thresholds; for an experiment each arm's mean reward with a 95 % interval and "
        "the always-valid comparison with the control and the samples still needed; for a shadow its "
        "agreement with the champion.",
        responses={200: RolloutSerializer, **ERRORS},
    ),
)
class RolloutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Canaries, A/B experiments and shadows of the registered models."""

    serializer_class = RolloutSerializer
    permission_classes = [IsAuthenticated, CanMaintainRolloutModel]

    def get_queryset(self) -> QuerySet[Rollout]:
        queryset = (
            Rollout.objects.filter(model__in=models_in_scope(self.request))
            .select_related("model", "created_by")
            .prefetch_related("arms__version")
        )
        if self.action == "list":
            params = self.request.query_params
            if name := params.get("model", "").strip():
                queryset = queryset.filter(model__name=name)
            if wanted := params.get("status", "").strip():
                if wanted == "active":
                    queryset = queryset.filter(status__in=ACTIVE)
                elif wanted in RolloutStatus.values:
                    queryset = queryset.filter(status=wanted)
                else:
                    raise exceptions.ValidationError(
                        {"status": [f"Unknown status; use one of {', '.join(RolloutStatus.values)} or active."]}
                    )
            if kind := params.get("kind", "").strip():
                if kind not in RolloutKind.values:
                    raise exceptions.ValidationError(
                        {"kind": [f"Unknown kind; use one of {', '.join(RolloutKind.values)}."]}
                    )
                queryset = queryset.filter(kind=kind)
        return queryset.order_by("-created_at", "-id")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "report": self.action != "list"}

    def _answer(self, rollout: Rollout, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=rollout.pk)
        return Response(RolloutSerializer(fresh, context=self.get_serializer_context()).data, status=code)

    @extend_schema(
        summary="Start a rollout",
        description="`kind` picks the fields: a canary (`version`, `steps`, `step_seconds`, "
        "`analysis_interval_seconds`, `gates`), an A/B experiment (`arms`, `control`, `metric`, "
        "`minimum_effect`, `alpha`) or a shadow (`version`, `fraction`). Maintainers of the model only; "
        "a model has at most one active rollout.",
        request=START_REQUEST,
        responses={201: RolloutSerializer, **ERRORS},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data
        if not isinstance(data, dict):
            raise exceptions.ValidationError({"detail": ["Send a JSON object."]})
        start = START_SERIALIZERS.get(str(data.get("kind", "")))
        if start is None:
            raise exceptions.ValidationError({"kind": [f"Choose one of {', '.join(RolloutKind.values)}."]})
        # Refuse a non-maintainer before telling them anything about their input.
        scope = models_in_scope(request)
        named = scope.filter(name=str(data.get("model", ""))).first()
        if named is not None and not can_maintain(request.user, named):
            raise exceptions.PermissionDenied(not_a_maintainer(named))
        body = start(data=data)
        # A model out of the key's scope: "does not exist", as for an unknown name.
        body.fields["model"].queryset = scope  # type: ignore[attr-defined]
        body.is_valid(raise_exception=True)
        try:
            rollout = body.save(actor=request.user)
        except services.RolloutError as exc:
            raise Refused(refusal(exc)) from exc
        return self._answer(rollout, status.HTTP_201_CREATED)

    def _steer(self, change: Callable[[Rollout], Rollout]) -> Response:
        rollout = self.get_object()
        try:
            changed = change(rollout)
        except services.RolloutError as exc:
            raise Refused(str(exc)) from exc
        return self._answer(changed)

    @_action_schema("Pause a running rollout", "The traffic split stays as it is; a canary stops advancing.")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._steer(lambda r: services.pause(r, actor=request.user))

    @_action_schema("Resume a paused rollout", "A canary's current step starts its clock again.")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._steer(lambda r: services.resume(r, actor=request.user))

    @_action_schema(
        "Promote: move production and end the rollout",
        "A canary or a shadow promotes its new version; an experiment promotes the arm named in `arm` "
        "(stop the experiment and promote its winner in one action). Reward sums are kept on the arms.",
        PromoteSerializer,
    )
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str | None = None) -> Response:
        body = PromoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        arm = body.validated_data.get("arm")
        rollout = self.get_object()
        if rollout.kind == RolloutKind.EXPERIMENT and arm is None:
            names = ", ".join(a.name for a in rollout.arms.all())
            raise exceptions.ValidationError({"arm": [f"Name the arm to promote: one of {names}."]})
        return self._steer(lambda r: services.promote(r, actor=request.user, arm_name=arm))

    @_action_schema("Abort: all traffic back to the champion", "Production does not move.", AbortSerializer)
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, pk: str | None = None) -> Response:
        body = AbortSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data.get("reason") or "aborted by hand"
        return self._steer(lambda r: services.abort(r, actor=request.user, reason=reason))

    @_action_schema(
        "Stop an experiment or a shadow without promoting",
        "Production does not move; reward sums are kept on the arms. A canary ends with abort or promote.",
    )
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        def stop(rollout: Rollout) -> Rollout:
            if rollout.kind == RolloutKind.CANARY:
                raise services.RolloutError("a canary ends with abort (back to the champion) or promote, not stop")
            return services.stop_experiment(rollout, actor=request.user)

        return self._steer(stop)

    @extend_schema(
        summary="Analyse a canary now, without acting",
        description="The gates of the current step against their thresholds, and what the next analysis "
        "would do (wait, advance, promote or roll back). Nothing changes.",
        responses={200: AnalysisSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def analysis(self, request: Request, pk: str | None = None) -> Response:
        rollout = self.get_object()
        if rollout.kind != RolloutKind.CANARY:
            raise Refused(f"only a canary has gates to analyse; this is a {rollout.get_kind_display().lower()}")
        return Response(analyze_canary(rollout).as_json())
