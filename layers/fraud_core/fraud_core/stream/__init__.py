"""The stream function's core: decode a Kafka batch, claim it, score it once, store, publish."""
