"""API keys and plans on the management API: `/api/keys/` and `/api/plans/`.

Everyone manages their own keys; another user's key is a 404, as on the keys page.
Admins (staff or superusers) also see every key, revoke any and set any key's plan and
limit overrides, and create, change and delete plans; everyone signed in reads plans.
A key's secret is in exactly one response, the one that created or rotated it, marked
`no-store`; only the key's owner may rotate it, since whoever rotates sees the secret.

A request made with an API key limited to some models may not touch keys at all: such a
key would otherwise mint a key for every model.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import plan_services, services
from accounts.keys_serializers import (
    LIMIT_FIELDS,
    ApiKeySerializer,
    ApiKeyWithSecretSerializer,
    KeyCreateSerializer,
    KeyLimitsSerializer,
    KeyRotateSerializer,
    PlanSerializer,
)
from accounts.models import ApiKey, Plan


def is_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_active and (user.is_superuser or user.is_staff))


class Refused(exceptions.APIException):
    """A request the keys or plans service refused (`services.ApiKeyError`)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request was refused."
    default_code = "refused"


class NoLimitedKeys(BasePermission):
    message = (
        "An API key limited to some models cannot manage API keys or plans: use a key whose patterns "
        "include *, or the keys page."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        return not isinstance(key, ApiKey) or key.covers_every_model


class AdminWrites(BasePermission):
    message = "Only an admin may create, change or delete plans."

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS or is_admin(request.user)


ErrorSerializer = inline_serializer("KeyError", fields={"detail": serializers.CharField()})
ERRORS = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid input: field → messages, or `detail`."),
    403: OpenApiResponse(ErrorSerializer, description="Not signed in, or not allowed."),
    404: OpenApiResponse(ErrorSerializer, description="No such key (or not yours)."),
}
KEY_ID = OpenApiParameter("public_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The key's id.")


def _secret_response(key: ApiKey, secret: str, code: int) -> Response:
    response = Response(ApiKeyWithSecretSerializer(key, context={"secret": secret}).data, status=code)
    add_never_cache_headers(response)
    return response


@extend_schema_view(
    list=extend_schema(
        summary="List API keys",
        description="Your keys, newest first; an admin sees every user's.",
        parameters=[
            OpenApiParameter("owner", OpenApiTypes.STR, description="Only this user's keys (admins)."),
            OpenApiParameter("status", OpenApiTypes.STR, description="active, revoked or expired."),
        ],
    ),
    retrieve=extend_schema(summary="Show an API key", parameters=[KEY_ID], responses={200: ApiKeySerializer, **ERRORS}),
    partial_update=extend_schema(
        summary="Set a key's plan and limits (admins)",
        parameters=[KEY_ID],
        request=KeyLimitsSerializer,
        responses={200: ApiKeySerializer, **ERRORS},
    ),
)
class ApiKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet[ApiKey]
):
    """API keys. Never deleted: a revoked key stays, with its audit trail."""

    serializer_class = ApiKeySerializer
    permission_classes = [IsAuthenticated, NoLimitedKeys]
    lookup_field = "public_id"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[ApiKey]:
        keys = ApiKey.objects.select_related("plan", "user").order_by("-created_at", "-pk")
        if not is_admin(self.request.user):
            return keys.filter(user=self.request.user.pk)
        if owner := self.request.query_params.get("owner"):
            keys = keys.filter(user__username=owner)
        return keys

    def filter_queryset(self, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        wanted = self.request.query_params.get("status") if self.action == "list" else None
        if not wanted:
            return queryset
        if wanted not in {"active", "revoked", "expired"}:
            raise exceptions.ValidationError({"status": ["Choose active, revoked or expired."]})
        # Few keys per user: the status is a computed property, filtered in Python.
        return ApiKey.objects.filter(pk__in=[k.pk for k in queryset if k.status == wanted]).select_related(
            "plan", "user"
        )

    @extend_schema(
        summary="Create an API key",
        description="The answer holds the secret, once.",
        request=KeyCreateSerializer,
        responses={201: ApiKeyWithSecretSerializer, **ERRORS},
    )
    def create(self, request: Request) -> Response:
        data = KeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        try:
            key, secret = services.create_key(
                request.user,
                name=fields["name"],
                model_patterns=fields["model_patterns"],
                actions=fields["actions"],
                expires_at=fields.get("expires_at"),
                future_models=fields["future_models"],
            )
        except services.ApiKeyError as exc:
            raise Refused(str(exc)) from exc
        return _secret_response(key, secret, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = self.get_object()
        if not is_admin(request.user):
            raise exceptions.PermissionDenied("Only an admin may change a key's plan and limits.")
        data = KeyLimitsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        plan = fields.get("plan", key.plan)
        overrides = {name: fields.get(name, getattr(key, name)) for name in LIMIT_FIELDS}
        try:
            key = services.set_limits(key, actor=request.user, plan=plan, **overrides)
        except services.ApiKeyError as exc:
            raise Refused(str(exc)) from exc
        return Response(ApiKeySerializer(key).data)

    @extend_schema(
        summary="Rotate an API key",
        description="A new secret for the same key (the answer holds it, once); the old one keeps working "
        "for `grace_seconds`. Only the key's owner may rotate it.",
        parameters=[KEY_ID],
        request=KeyRotateSerializer,
        responses={200: ApiKeyWithSecretSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, public_id: str) -> Response:
        key = self.get_object()
        if key.user_id != request.user.pk:
            raise exceptions.PermissionDenied(
                "Only the key's owner may rotate it: whoever rotates a key sees its new secret. Revoke it instead."
            )
        data = KeyRotateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            key, secret = services.rotate_key(key, actor=request.user, grace=data.grace())
        except services.ApiKeyError as exc:
            raise Refused(str(exc)) from exc
        return _secret_response(key, secret, status.HTTP_200_OK)

    @extend_schema(
        summary="Revoke an API key",
        description="Requests with it are refused from now on (every gateway hears of it within a second). "
        "Revoking a revoked key changes nothing.",
        parameters=[KEY_ID],
        request=None,
        responses={200: ApiKeySerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, public_id: str) -> Response:
        key = services.revoke_key(self.get_object(), actor=request.user)
        return Response(ApiKeySerializer(key).data)


PLAN_NAME = OpenApiParameter("name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The plan's name.")


@extend_schema_view(
    list=extend_schema(summary="List plans"),
    retrieve=extend_schema(summary="Show a plan", parameters=[PLAN_NAME]),
    create=extend_schema(summary="Create a plan (admins)", responses={201: PlanSerializer, **ERRORS}),
    partial_update=extend_schema(summary="Change a plan (admins)", parameters=[PLAN_NAME]),
    destroy=extend_schema(summary="Delete a plan no key uses (admins)", parameters=[PLAN_NAME]),
)
class PlanViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Plan],
):
    """Plans: rate limits, daily quota and priority level of the keys on them."""

    serializer_class = PlanSerializer
    permission_classes = [IsAuthenticated, NoLimitedKeys, AdminWrites]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Plan]:
        return Plan.objects.annotate(key_count=Count("keys")).order_by("name")

    def perform_create(self, serializer: Any) -> None:
        plan = Plan(**serializer.validated_data)
        serializer.instance = self._save(plan, None)

    def perform_update(self, serializer: Any) -> None:
        plan = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(plan, name, value)
        self._save(plan, list(serializer.validated_data))

    def _save(self, plan: Plan, changed: list[str] | None) -> Plan:
        try:
            plan_services.save_plan(plan, actor=self.request.user, changed=changed)
        except services.ApiKeyError as exc:
            raise Refused(str(exc)) from exc
        plan.key_count = ApiKey.objects.filter(plan=plan).count()  # type: ignore[attr-defined]
        return plan

    def perform_destroy(self, instance: Plan) -> None:
        try:
            plan_services.delete_plans([instance], actor=self.request.user)
        except services.ApiKeyError as exc:
            raise Refused(str(exc)) from exc
