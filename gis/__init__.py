"""Spatial analyses (no HTTP): CRS handling, GB 18218 grading, distances, exposure, routing."""
