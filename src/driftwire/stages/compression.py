"""The codec of the records the stages produce (partials, watermarks, the changelog).

zstd (aiokafka's codec through ``cramjam``, a dependency) compresses sketches as well as gzip
at a tenth of the CPU: aiokafka's gzip runs at zlib's level 9, and was the largest share of
stage 2's CPU and a large one of stage 1's. gzip where ``cramjam`` is missing. Consumers of
every codec read both, so a change of codec needs no migration.

>>> output_compression() in ("zstd", "gzip")
True
"""

from __future__ import annotations

from aiokafka.codec import has_zstd

__all__ = ["output_compression"]


def output_compression() -> str:
    """``zstd`` when aiokafka can write it, else ``gzip``."""
    return "zstd" if has_zstd() else "gzip"
