"""Structured errors of the decision core.

They cross the component boundary as JSON (`to_dict`, in `api`) and become HTTP 4xx at the
host.
"""

from __future__ import annotations


class DecisionError(Exception):
    """A request the core refuses: `code` is stable, `field` points at the culprit."""

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class BatchTooLarge(DecisionError):
    status = 413


class NotReady(DecisionError):
    """No snapshot is loaded yet: the edge cannot decide, through no fault of the client."""

    status = 503


class SnapshotError(DecisionError):
    """A snapshot that cannot be loaded; the previous one keeps serving."""

    status = 422
