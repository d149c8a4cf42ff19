"""vafa.kit: the shared service kit. Every service is built from these parts and nothing else:
settings, database, errors, outbox, inbox, Kafka consumers, the CloudEvents codec, auth,
observability and the pytest plugin."""
