"""Domain errors raised by analyses; api/ maps them to HTTP status codes (api/errors.py)."""

from layers.errors import Bilingual


class AnalysisError(Bilingual, ValueError):
    """Bad input to an analysis (answered 4xx with the message)."""


class UnknownSubstanceError(AnalysisError):
    """A substance that is neither in GB 18218 Table 1 nor given a hazard class."""


class ConflictError(AnalysisError):
    """A request that the current state refuses (answered 409), e.g. an alarm already acknowledged."""
