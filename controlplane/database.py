"""The configured PostgreSQL database as a libpq connection string, for the code that
connects without Django's ORM (readiness probes, the service checks)."""

from __future__ import annotations

from django.conf import settings
from psycopg.conninfo import make_conninfo


def database_conninfo() -> str:
    db = settings.DATABASES["default"]
    params = {
        "host": db.get("HOST"),
        "port": db.get("PORT"),
        "dbname": db.get("NAME"),
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
    }
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v})
