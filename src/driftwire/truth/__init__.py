"""Ground truth: decoding label records, the stream join by ``event_id``, realized performance.

Pure logic, like the rest of the core: no Kafka, no clock, no metrics.
"""
