"""Drift statistics over sketches, with error bounds and null distributions (pure)."""
