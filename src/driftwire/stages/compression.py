"""The codec of the records the stages produce (partials, watermarks, the changelog), and
the size of stage 1's record batches.

zstd (aiokafka's codec through ``cramjam``, a dependency) compresses sketches as well as gzip
at a tenth of the CPU: aiokafka's gzip runs at zlib's level 9, and was the largest share of
stage 2's CPU and a large one of stage 1's. gzip where ``cramjam`` is missing. Consumers of
every codec read both, so a change of codec needs no migration.

>>> output_compression() in ("zstd", "gzip")
True
"""

from __future__ import annotations

from typing import Any

from aiokafka.codec import has_zstd

__all__ = ["OUTPUT_BATCH_BYTES", "output_compression", "output_producer_options"]

#: The most bytes of records aiokafka puts in one batch of stage 1's output (partials,
#: watermarks, dead letters). aiokafka's default, 16 KiB, made every partial (tens to hundreds
#: of KB) a batch of its own, and a send to a partition whose batch is full waits until that
#: batch has gone out: the profile stage spent half its wall time there in the pipeline
#: benchmark. Under Kafka's default ``message.max.bytes`` (1 MiB) even if nothing compresses.
OUTPUT_BATCH_BYTES = 1_000_000


def output_compression() -> str:
    """``zstd`` when aiokafka can write it, else ``gzip``."""
    return "zstd" if has_zstd() else "gzip"


def output_producer_options() -> dict[str, Any]:
    """What stage 1's producers (idempotent, or one transactional per input partition) share:
    every replica acknowledges, 20 ms of linger, this codec, batches of up to
    :data:`OUTPUT_BATCH_BYTES`."""
    return {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 20,
        "compression_type": output_compression(),
        "max_batch_size": OUTPUT_BATCH_BYTES,
    }
