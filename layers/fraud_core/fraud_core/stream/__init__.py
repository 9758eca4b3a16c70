"""The stream function's core: decode a Kafka batch, score it once, commit it exactly once, publish."""
