"""Stage 1's pure core: fold decoded batches into event-time bucket profiles."""
