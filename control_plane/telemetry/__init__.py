"""What the control plane does with telemetry: the store (SQLite or Kinesis), per-trigger reports
and the audit.
"""
