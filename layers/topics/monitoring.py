"""Derived layers of the monitoring analyses: models and registry entries."""

from layers.spec import LayerSpec

LAYERS: tuple[LayerSpec, ...] = ()
