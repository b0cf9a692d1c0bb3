"""Mergeable per-column sketches and the profile of one (model, version, segment) (pure)."""
