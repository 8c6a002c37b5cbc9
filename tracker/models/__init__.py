"""Pure profile, ranking and learning logic: no Kafka, Redis or HTTP here."""
