"""Admin classes for rows that only the control plane's services write (so that every
change is audited and reaches the gateways): the admin may browse them, not edit them."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ViewOnlyAdmin(admin.ModelAdmin):
    """No adding and no changing; deleting stays as the model's permissions say."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(ViewOnlyAdmin):
    """No adding, changing or deleting."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
