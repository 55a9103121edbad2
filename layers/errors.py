"""Errors of the data layer; api/ maps them to HTTP status codes and CLI messages."""

from __future__ import annotations

from dataclasses import dataclass


class Bilingual:
    """Mixin: an error whose message may also be given in Chinese (``zh``); the API answers it as
    ``description_zh`` beside the English ``description`` (the message itself stays English for clients
    and logs)."""

    def __init__(self, message: str = "", *args, zh: str | None = None):
        super().__init__(message, *args)
        self.zh = zh


class DataError(Bilingual, ValueError):
    """Bad input for the store (answered 4xx / a CLI error with the message)."""


class ConfigError(RuntimeError):
    """Settings that do not fit the database or machine (a CLI error with the message, the server does not start)."""


class CRSInputError(DataError):
    """A source CRS we cannot interpret."""


@dataclass
class Rejection:
    row: int  # 1-based feature number in the source file
    reason: str


class ImportRejected(DataError):
    """An import refused as a whole; nothing was written."""

    def __init__(self, layer: str, rejections: list[Rejection], total: int):
        self.layer, self.rejections, self.total = layer, rejections, total
        super().__init__(f"{len(rejections)} of {total} features rejected for layer {layer!r}; nothing written")

    def report(self, limit: int = 200) -> str:
        lines = [str(self)]
        lines += [f"  row {r.row}: {r.reason}" for r in self.rejections[:limit]]
        if len(self.rejections) > limit:
            lines.append(f"  ... and {len(self.rejections) - limit} more")
        return "\n".join(lines)
