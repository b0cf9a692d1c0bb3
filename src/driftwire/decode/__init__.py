"""Raw Kafka values -> validated columnar batches, and the dead-letter reasons (pure)."""
