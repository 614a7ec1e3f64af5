"""Alerting: configuration, the pure escalation, the outbox and its channels."""
