"""Reachability of the services Turnout needs, with advice an operator can act on."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import redis
from django.conf import settings
from psycopg import sql

from controlplane.database import database_conninfo
from controlplane.redis_client import new_redis, redis_target

POSTGRES_HOW = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "(or `sudo systemctl start postgresql`), or `docker compose up -d postgres redis` "
    "with DATABASE_URL=postgres://turnout:turnout@127.0.0.1:5432/turnout in .env"
)
REDIS_HOW = (
    'start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no` '
    "(or `sudo systemctl start redis-server`), or `docker compose up -d postgres redis`"
)


@dataclass
class ServiceProblem:
    service: str
    message: str


def check_postgres(create_database: bool = False, timeout: int = 3) -> ServiceProblem | None:
    db = settings.DATABASES["default"]
    name = db["NAME"]
    try:
        with psycopg.connect(database_conninfo(), connect_timeout=timeout, autocommit=True):
            return None
    except psycopg.OperationalError as exc:
        text = str(exc)
        if f'database "{name}" does not exist' not in text:
            where = f"{db.get('HOST') or 'local socket'}:{db.get('PORT') or 5432}"
            reason = text.strip().splitlines()[0]
            return ServiceProblem("PostgreSQL", f"PostgreSQL at {where} is unreachable ({reason}); {POSTGRES_HOW}")
        if not create_database:
            advice = f'database "{name}" does not exist; run `make run` or `createdb {name}`'
            return ServiceProblem("PostgreSQL", advice)
    maintenance = database_conninfo().replace(f"dbname={name}", "dbname=postgres")
    with psycopg.connect(maintenance, connect_timeout=timeout, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return None


def check_redis(timeout: float = 3.0) -> ServiceProblem | None:
    try:
        new_redis(socket_timeout=timeout, socket_connect_timeout=timeout).ping()
    except redis.RedisError as exc:
        return ServiceProblem("Redis", f"{redis_target().describe()} is unreachable ({exc}); {REDIS_HOW}")
    return None
