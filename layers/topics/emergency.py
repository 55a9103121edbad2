"""Derived layers of the emergency analyses: models and registry entries."""

from layers.spec import LayerSpec

LAYERS: tuple[LayerSpec, ...] = ()
