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


@pytest.mark.parametrize("asked", [True, False])
def test_the_default_connection_bound_over_the_open_files_limit_is_no_warning(caplog, asked):
    """Every start on its defaults warned that EDGE_MAX_CONNECTIONS=10000 could not be met:
    only a bound the operator set is worth a warning."""
    import logging
    import resource

    from edge_module.http.loop_server import connections_within_open_files

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-files limit here to run over")
    with caplog.at_level(logging.INFO, logger="edge"):
        allowed = connections_within_open_files(soft * 2, asked=asked)
    assert allowed < soft * 2
    [record] = [r for r in caplog.records if "connections at once" in r.getMessage()]
    assert record.levelno == (logging.WARNING if asked else logging.INFO)
