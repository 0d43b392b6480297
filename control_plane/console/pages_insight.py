"""The console's "Experiments", "Learning" and "Audit" pages: the experiment report with its
sample-ratio check, the learning loop's recalibrations, and the trigger audit."""

from __future__ import annotations
