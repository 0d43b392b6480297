"""The edge host: HTTP surface, component runtime, session stores, snapshot sync, telemetry."""
