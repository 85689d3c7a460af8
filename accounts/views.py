"""Account pages (sign up, throttled log in) and the keys page.

A key's secret appears in exactly one response, the one to the request that
created or rotated it: it is never put in the session, a message or a log,
and that response is marked `no-store` so that no cache keeps it either.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from accounts import services, throttle
from accounts.forms import (
    GRACE_CHOICES,
    KeyCreateForm,
    RotateForm,
    SignUpForm,
    ThrottledAuthenticationForm,
    default_grace,
)
from accounts.models import ApiKey
from audit.services import record
from controlplane.htmx import HtmxHttpRequest


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


# --- Accounts ---------------------------------------------------------------------


def _too_many(response: HttpResponse, seconds: int) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("keys:list")
    if not settings.TURNOUT["SIGNUP_OPEN"]:
        return render(request, "registration/signup.html", {"form": None}, status=403)
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and (wait := throttle.account_request("signup", throttle.client_address(request))):
        form.errors.clear()
        form.add_error(None, throttle.refusal(wait, "sign-ups from your address"))
        return _too_many(render(request, "registration/signup.html", {"form": form}), wait)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()
            # No email in the entry: every signed-in user can read the audit log.
            record(user, "user.signed_up", user, after={"username": user.get_username()})
        login(request, user)
        messages.success(request, f"Welcome, {user.get_username()}. Create an API key below to call the models.")
        return redirect("keys:list")
    return render(request, "registration/signup.html", {"form": form})


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset, with at most TURNOUT_ACCOUNT_REQUESTS_PER_HOUR requests per address."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = throttle.account_request("password-reset", throttle.client_address(request))
        if not wait:
            return super().post(request, *args, **kwargs)
        form = self.get_form()
        form.errors.clear()  # reading `errors` validates the form; only the refusal is shown
        form.add_error(None, throttle.refusal(wait, "reset requests from your address"))
        return _too_many(self.render_to_response(self.get_context_data(form=form)), wait)


class LoginView(auth_views.LoginView):
    """Django's log in, with the failed-login throttle of `throttle.py` in its form."""

    form_class = ThrottledAuthenticationForm

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if isinstance(form, ThrottledAuthenticationForm) and form.retry_after:
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response


# --- The keys page ------------------------------------------------------------------


def _own_keys(request: HttpRequest) -> QuerySet[ApiKey]:
    # Everyone, admins included, reaches only their own keys here; another user's key is a 404.
    return ApiKey.objects.filter(user=request.user.pk).select_related("plan", "user")


def _own_key(request: HttpRequest, public_id: str) -> ApiKey:
    return get_object_or_404(_own_keys(request), public_id=public_id)


def _row_context() -> dict[str, Any]:
    return {
        "grace_choices": GRACE_CHOICES,
        "default_grace": default_grace(),
        "default_grace_text": dict(GRACE_CHOICES).get(default_grace(), ""),
        "now": timezone.now(),
    }


def _page_context(request: HttpRequest, form: KeyCreateForm, **extra: Any) -> dict[str, Any]:
    return {"keys": list(_own_keys(request).order_by("-created_at")), "form": form, **_row_context(), **extra}


def _showing_secret(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)
    return response


@login_required
@require_GET
def key_list(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "accounts/keys.html", _page_context(request, KeyCreateForm()))


@login_required
@require_POST
def key_create(request: HtmxHttpRequest) -> HttpResponse:
    form = KeyCreateForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            key, secret = services.create_key(
                request.user,
                name=data["name"],
                model_patterns=data["model_patterns"],
                actions=data["actions"],
                expires_at=form.expires_at(),
                future_models=data["future_models"],
            )
        except services.ApiKeyError as exc:
            # The service owns the rules; a pattern that matches no model is the patterns' error.
            form.add_error(exc.field if exc.field in form.fields else None, _sentence(str(exc)))
        else:
            context = _page_context(request, KeyCreateForm(), secret=secret, secret_key=key)
            template = "accounts/_key_created.html" if request.htmx else "accounts/keys.html"
            return _showing_secret(render(request, template, context))
    template = "accounts/_key_form.html" if request.htmx else "accounts/keys.html"
    return render(request, template, _page_context(request, form))


def revoke_effect(key: ApiKey) -> str:
    """What revoking does, grace period included: none, unlike a rotation."""
    text = f"Requests with '{key.name}' ({key.prefix}) are refused at once: a revoked key has no grace period"
    if key.previous_valid_until and key.previous_valid_until > timezone.now():
        text += (
            f", and its previous secret, which still worked until {key.previous_valid_until:%Y-%m-%d %H:%M} UTC "
            "after the last rotation, stops too"
        )
    grace = dict(GRACE_CHOICES).get(default_grace(), "24 hours")
    return (
        f"{text}. This cannot be undone. To replace the secret without cutting clients off, rotate it instead: "
        f"the old secret keeps working for the grace period you choose ({grace} unless changed)."
    )


@login_required
@require_POST
def key_revoke(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    """Revokes on a POST with `confirm=yes` (htmx sends it once its confirm dialog is accepted);
    without it, a page that says what revoking does, so that it also asks first without JS."""
    key = _own_key(request, public_id)
    if request.POST.get("confirm") != "yes":
        return render(request, "accounts/confirm_revoke.html", {"key": key, "effect": revoke_effect(key)})
    key = services.revoke_key(key, actor=request.user)
    if request.htmx:
        return render(request, "accounts/_key_row.html", {"key": key, **_row_context()})
    messages.success(request, f"Key '{key.name}' revoked: requests with it are refused from now on.")
    return redirect("keys:list")


@login_required
@require_POST
def key_rotate(request: HtmxHttpRequest, public_id: str) -> HttpResponse:
    key = _own_key(request, public_id)
    form = RotateForm(request.POST)
    if form.is_valid():
        try:
            key, secret = services.rotate_key(key, actor=request.user, grace=form.grace_period())
        except services.ApiKeyError as exc:
            error = _sentence(str(exc))
        else:
            context = _page_context(request, KeyCreateForm(), secret=secret, secret_key=key, rotated=True)
            template = "accounts/_key_rotated.html" if request.htmx else "accounts/keys.html"
            return _showing_secret(render(request, template, context))
    else:
        error = " ".join(str(message) for message in form.errors.get("grace", []))
    if request.htmx:
        # The error goes next to the rotate form, in the key's row.
        key.refresh_from_db()
        response = render(request, "accounts/_key_row.html", {"key": key, "row_error": error, **_row_context()})
        return reswap(retarget(response, f"#key-{key.public_id}"), "outerHTML")
    messages.error(request, f"Key '{key.name}' was not rotated: {error}")
    return redirect("keys:list")
