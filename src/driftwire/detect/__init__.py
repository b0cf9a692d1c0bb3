"""Stage 2's pure core: windows against references -> findings -> alerts."""
