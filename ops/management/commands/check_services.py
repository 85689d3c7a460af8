from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops.services import check_postgres, check_redis


class Command(BaseCommand):
    help = "Check that PostgreSQL and Redis answer; say how to start whichever does not."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--create-database", action="store_true", help="create the configured database if missing")

    def handle(self, *args: Any, **options: Any) -> None:
        problems = [p for p in (check_postgres(options["create_database"]), check_redis()) if p is not None]
        for problem in problems:
            self.stderr.write(self.style.ERROR(f"{problem.service} is down: {problem.message}"))
        if problems:
            raise CommandError(f"{' and '.join(p.service for p in problems)} unreachable; start it and try again.")
        self.stdout.write(self.style.SUCCESS("PostgreSQL and Redis answer."))
