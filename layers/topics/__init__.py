"""Derived layers by topic: each module declares its models and registry entries (LAYERS)."""
