"""The analysis registry: name -> the function that recomputes it.

Each function is ``run(engine, settings) -> dict`` (statistics to print/store); it writes its
derived layers in one transaction per analysis with a run id (layers/derived.py) and is safe to
re-run. Modules are imported lazily so a CLI call loads only what it runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

ANALYSES: dict[str, str] = {
    "roads": "gis.roadnet:run",
    "hazchem": "gis.hazchem:run",
    "tailings": "gis.tailings:run",
}


def resolve(name: str) -> Callable:
    module, func = ANALYSES[name].split(":")
    return getattr(import_module(module), func)
