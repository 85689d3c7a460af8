"""Registry consistency: every ready or archived version's file against its sha256, and
files in storage that no version refers to."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry import storage
from registry.models import ModelVersion, VersionStatus


@dataclass
class ConsistencyReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.orphaned)


def check_registry(verify_hashes: bool = True) -> ConsistencyReport:
    report = ConsistencyReport()
    store = storage.artifact_storage()
    # Archived versions keep their files to be restorable, so those are checked too.
    kept = ModelVersion.objects.filter(status__in=[VersionStatus.READY, VersionStatus.ARCHIVED]).exclude(artifact="")
    for version in kept.select_related("model").iterator():
        report.checked += 1
        label = f"{version} ({version.artifact})"
        if not store.exists(version.artifact):
            report.missing.append(label)
        elif verify_hashes and storage.sha256_of_stored(version.artifact) != version.sha256:
            report.corrupt.append(label)
    referenced = set(ModelVersion.objects.exclude(artifact="").values_list("artifact", flat=True))
    report.orphaned = sorted(name for name in storage.list_stored() if name not in referenced)
    return report
