"""`python -m loadtest.bench_instructions`: instructions per decision, counted under valgrind
(the figure the performance work is judged by where timings are noisy)."""

import shutil

import pytest

from loadtest import bench_instructions

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None,
                                reason="valgrind is not installed (./build.sh test installs it)")


def test_more_decisions_count_more_instructions_at_a_steady_cost_each():
    idle = bench_instructions.count("native", 0, 30, None)
    ten = bench_instructions.count("native", 10, 30, None)
    thirty = bench_instructions.count("native", 30, 30, None)
    one = (ten - idle) / 10
    # the bench case costs hundreds of thousands of instructions natively, not a handful
    # (a child that decided nothing) nor a set-up's worth (a child that re-did its set-up)
    assert 50_000 < one < 5_000_000
    assert (thirty - idle) / 30 == pytest.approx(one, rel=0.1)


def test_a_failing_child_is_an_error_not_a_count(tmp_path):
    with pytest.raises(SystemExit, match="valgrind run failed"):
        bench_instructions.count("component", 1, 30, tmp_path)  # no component there
