"""Tools for people who write rule packs: tests, lint, diff and backtests (simulate)."""
