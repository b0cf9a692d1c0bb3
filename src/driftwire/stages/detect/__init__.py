"""Stage 2 on Kafka: the Faust app around the pure detector."""
