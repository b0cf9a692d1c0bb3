"""The alert model, findings, the alert policy, grouping and silences (pure)."""
