"""Stream function: Kafka event-source handler, plus the producer CLI and the local event-source runner."""
