"""Bounds of the edge's settings, shared by the host (`host/config.py`) and the edge function,
which imports nothing of the host: the same value is refused by both."""

# Any duration (`*_s`), at most ten years: 1e306 s passed as finite, then its milliseconds
# overflowed an int as the host started
MAX_SECONDS = 10 * 365 * 86_400
# A request's own deadlines (body, head, send): a client held longer is a held thread
MAX_REQUEST_TIMEOUT_S = 3600
