"""The shells that move data: the Kafka stages and the in-memory transport."""
