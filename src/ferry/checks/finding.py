"""A finding: one requirement's verdict, naming the objects it is about and the remedy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    PASS = "pass"
    WARNING = "warning"
    ERROR = "error"
    NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class Finding:
    code: str  # stable, e.g. "network.missing"
    status: Status
    message: str
    remedy: str = ""
    objects: dict[str, str] = field(default_factory=dict)  # kind -> name: vm, host, disk, ...

    @property
    def blocking(self) -> bool:
        return self.status is Status.ERROR


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.blocking]


def finding_dict(finding: Finding) -> dict[str, object]:
    return {"code": finding.code, "status": finding.status.value, "message": finding.message,
            "remedy": finding.remedy, "objects": dict(finding.objects)}
