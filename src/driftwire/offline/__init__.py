"""Files in, profiles out: baselines from training data, the demo generator."""
