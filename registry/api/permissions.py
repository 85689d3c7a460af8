"""Permission classes for the registry API, built on `registry.permissions`.

Every endpoint needs a signed-in user (the project default, IsAuthenticated,
is listed first on each view). On top of that:

- `CanCreateOrMaintainModel`: anyone reads; creating a model needs
  `can_create_models`; changing one needs `can_maintain` on it.
- `CanMaintainParentModel`: for resources under `/models/{name}/` (versions,
  aliases): anyone reads; any change needs `can_maintain` on the model named
  in the URL.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from registry.models import RegisteredModel
from registry.permissions import can_create_models, can_maintain


class HasParentModel(Protocol):
    def get_registered_model(self) -> RegisteredModel: ...


def _not_maintainer(model: RegisteredModel) -> str:
    return (
        f"Only maintainers of model '{model.name}' may change it or its versions and aliases; "
        "ask its owner or an admin to add you as a maintainer."
    )


class CanCreateOrMaintainModel(permissions.BasePermission):
    message = "You do not have permission to change this model."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        if getattr(view, "action", None) == "create" and not can_create_models(request.user):
            self.message = (
                "Only members of the 'maintainers' group or admins may create models; ask an admin to add you."
            )
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
