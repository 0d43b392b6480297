"""The console's "Packs and revisions" and "Fleet" pages, and the publish and rollback
forms (publisher only, each behind a confirmation step)."""

from __future__ import annotations
