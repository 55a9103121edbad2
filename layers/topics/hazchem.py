"""Derived layers of the hazchem analyses: models and registry entries."""

from layers.spec import LayerSpec

LAYERS: tuple[LayerSpec, ...] = ()
