"""Derived layers of the roadnet analyses: models and registry entries."""

from layers.spec import LayerSpec

LAYERS: tuple[LayerSpec, ...] = ()
