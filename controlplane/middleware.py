"""NUL characters in a URL, a query parameter or a page's form field: 400, before any view.

PostgreSQL cannot hold a NUL in text: a lookup with one (`/models/a%00b/`, `?q=a%00b`)
raises a DataError, which Django answers with 500. Forms and serializers refuse NUL in
their own fields; this refuses it everywhere else, naming the parameter: in DRF's error
shape for the management API (`{"q": ["Null characters are not allowed."]}`), as a
short page elsewhere. The API's bodies are checked by its parsers (`controlplane.rest`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse, QueryDict
from django.utils.deprecation import MiddlewareMixin
from django.utils.html import escape
from rest_framework.views import APIView

from controlplane.rest import NULL_MESSAGE


def _null_in(params: QueryDict) -> str | None:
    for key, values in params.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return key.replace("\x00", "\\u0000")
    return None


def _is_api(view: Callable[..., Any]) -> bool:
    view_class = getattr(view, "cls", None)  # set by APIView.as_view() and viewsets' as_view()
    return isinstance(view_class, type) and issubclass(view_class, APIView)


def _checks_form(request: HttpRequest, view: Callable[..., Any], api: bool) -> bool:
    """Pages' form posts: CSRF's check has already parsed them. Not the API's (its parsers
    check its bodies, whatever their media type), nor a csrf_exempt page's: the upload page
    parses its multipart body only once it has checked who asks and how large the body is
    (its form refuses NUL in its fields)."""
    return request.method == "POST" and not api and not getattr(view, "csrf_exempt", False)


class RefuseNullCharacters(MiddlewareMixin):
    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        api = _is_api(view)
        where: tuple[str, str] | None = None
        if any(isinstance(value, str) and "\x00" in value for value in (*args, *kwargs.values())):
            named = [key for key, value in kwargs.items() if isinstance(value, str) and "\x00" in value]
            where = (named[0] if named else "path", "path")
        elif (key := _null_in(request.GET)) is not None:
            where = (key, "query parameter")
        elif _checks_form(request, view, api) and (key := _null_in(request.POST)) is not None:
            where = (key, "form field")
        if where is None:
            return None
        name, kind = where
        if api:
            return JsonResponse({name: [NULL_MESSAGE]}, status=400)
        return HttpResponseBadRequest(
            f'<p class="error" role="alert">The {kind} {escape(name)} contains a NUL character, '
            "which is not allowed.</p>",
            content_type="text/html; charset=utf-8",
        )
