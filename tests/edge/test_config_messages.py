"""Settings the edge host cannot use are named with what was expected, in words."""

from __future__ import annotations

import pytest

from edge_module.host.config import ConfigError, EdgeConfig


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("EDGE_THREADS", "two", "expected a whole number"),
    ("EDGE_THREADS", "2.5", "expected a whole number"),
    ("EDGE_DRAIN_TIMEOUT_S", "soon", "expected a number"),
])
def test_a_setting_that_is_not_a_number_says_which_kind(name, raw, expected):
    """It said "expected a int" (Python's type name)."""
    with pytest.raises(ConfigError) as caught:
        EdgeConfig.from_env({name: raw})
    assert str(caught.value) == f"{name}={raw!r}: {expected}"
