"""Channels beyond the page: push, email and webhook actions, sent by the edge host.

A decision returns such actions as `deliveries` (never to the visitor); the host turns each
into a delivery record (`records.py`), adds it to a durable outbox (`outbox.py`, SQLite),
and a dispatcher thread (`dispatcher.py`) sends it to the configured sink (`sinks.py`: a
signed HTTPS webhook or a Kinesis stream) at its due moment, at least once, under an
idempotency key, with retries, backoff and jitter.
"""
