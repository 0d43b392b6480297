"""`python -m loadtest.bench_instructions`: instructions per decision, counted under valgrind
(the figure the performance work is judged by where timings are noisy)."""

import shutil

import pytest

from loadtest import bench_instructions

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None,
                                reason="valgrind is not installed (./build.sh test installs it)")


def test_a_decision_is_counted_apart_from_the_set_up():
    # two runs, not three: each is a Python start-up under valgrind (~15 s on CI)
    idle = bench_instructions.count("native", 0, 30, None)
    twenty = bench_instructions.count("native", 20, 30, None)
    one = (twenty - idle) / 20
    # the bench case costs hundreds of thousands of instructions natively, not a handful
    # (a child that decided nothing) nor a set-up's worth (a child that re-did its set-up:
    # tens of millions)
    assert 50_000 < one < 5_000_000


def test_a_failing_child_is_an_error_not_a_count(tmp_path):
    with pytest.raises(SystemExit, match="(?s)valgrind run failed.*no decision-engine.wasm"):
        bench_instructions.count("component", 1, 30, tmp_path)  # no component there
