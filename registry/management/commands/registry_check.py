from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.consistency import check_registry


class Command(BaseCommand):
    help = (
        "Verify every ready version's artifact against its sha256 and report missing, "
        "corrupt and orphaned files. Exits non-zero when anything is wrong."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-hash", action="store_true", help="check presence only, skip re-hashing")

    def handle(self, *args: Any, **options: Any) -> None:
        report = check_registry(verify_hashes=not options["no_hash"])
        for label in report.missing:
            self.stderr.write(f"MISSING  {label}")
        for label in report.corrupt:
            self.stderr.write(f"CORRUPT  {label}: sha256 does not match")
        for name in report.orphaned:
            self.stderr.write(f"ORPHAN   {name}: no version refers to it")
        summary = (
            f"{report.checked} ready versions checked: {len(report.missing)} missing, "
            f"{len(report.corrupt)} corrupt, {len(report.orphaned)} orphaned files"
        )
        if not report.ok:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
