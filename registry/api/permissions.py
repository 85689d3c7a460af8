"""Permission classes for the registry API, built on `registry.permissions`.

Every endpoint needs a signed-in user (the project default, IsAuthenticated,
is listed first on each view). On top of that:

- `CanCreateOrMaintainModel`: anyone reads; creating a model needs
  `can_create_models`; changing one needs `can_maintain` on it.
- `CanMaintainParentModel`: for resources under `/models/{name}/` (versions,
  aliases): anyone reads; any change needs `can_maintain` on the model named
  in the URL.

A request made with an API key limited to some models (`accounts.api.model_scope`)
sees only those: `models_in_scope` is the queryset every view starts from, so the
others answer 404, as unknown models do, and a key creates only models whose name
matches its patterns.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from django.db.models import QuerySet
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.api import model_scope
from accounts.models import ApiKey
from registry.models import RegisteredModel
from registry.permissions import can_create_models, can_maintain


def models_in_scope(request: Request) -> QuerySet[RegisteredModel]:
    """The models this request may see: all of them, or those its key's patterns match."""
    models = RegisteredModel.objects.all()
    key = model_scope(request)
    if key is None:
        return models
    # Globs match in Python, as on /v2; a registry has hundreds of names, not millions.
    names = [name for name in models.values_list("name", flat=True) if key.allows_model(name)]
    return models.filter(name__in=names)


class HasParentModel(Protocol):
    def get_registered_model(self) -> RegisteredModel: ...


def _not_maintainer(model: RegisteredModel) -> str:
    return (
        f"Only maintainers of model '{model.name}' may change it or its versions and aliases; "
        "ask its owner or an admin to add you as a maintainer."
    )


def out_of_scope(key: ApiKey, name: str) -> str:
    return (
        f"This API key may only create models whose name matches its patterns "
        f"({', '.join(key.model_patterns)}); '{name}' does not."
    )


class CanCreateOrMaintainModel(permissions.BasePermission):
    message = "You do not have permission to change this model."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        if getattr(view, "action", None) != "create":
            return True
        if not can_create_models(request.user):
            self.message = (
                "Only members of the 'maintainers' group or admins may create models; ask an admin to add you."
            )
            return False
        key = model_scope(request)
        name = request.data.get("name") if isinstance(request.data, dict) else None
        # Before the serializer, whose "already exists" would tell of a model out of scope.
        # The name as its CharField will read it (a number is text to it, and it trims).
        if key is not None and isinstance(name, str | int | float) and not isinstance(name, bool):
            name = str(name).strip()
            if not key.allows_model(name):
                self.message = out_of_scope(key, name)
                return False
        return True

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        if not can_maintain(request.user, obj):
            self.message = _not_maintainer(obj)
            return False
        return True


class CanMaintainParentModel(permissions.BasePermission):
    """The view must offer `get_registered_model()` (404 when the name is unknown)."""

    message = "You do not have permission to change this model."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        model = cast(HasParentModel, view).get_registered_model()
        if not can_maintain(request.user, model):
            self.message = _not_maintainer(model)
            return False
        return True
