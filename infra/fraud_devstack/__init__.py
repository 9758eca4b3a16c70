"""Developer stack: the end-to-end demo and starters for local services (moto_server, Redis, Kafka)."""
