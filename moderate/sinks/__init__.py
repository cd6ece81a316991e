"""Sinks: where verdicts go besides the caller (review queue, audit log, webhooks)."""
