"""`python -m loadtest.guest_profile`: a callgrind profile of the component, with the JIT
code's addresses named from wasmtime's perf map. These check the reading of both files on
small ones written by hand in the formats valgrind and wasmtime write; a real profile takes
minutes (docs/performance.md shows one)."""

from collections import Counter

import pytest

from loadtest.guest_profile import CodeMap, costs, group_of, report

CALLGRIND = """# callgrind format
version: 1
creator: callgrind-3.19.0
positions: instr line
events: Ir
summary: 231

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ???
fn=(1) host_fn
0x1000 0 5
+4 0 7
cob=(2) ???
cfi=(1)
cfn=(2) 0x0000000000002000
calls=3 0x2000 0
* 0 100

ob=(2)
fl=(1)
fn=(2)
0x2000 0 60
+8 0 30
-8 0 10
0x3000 0 9
fn=(3) 0x0000000000004000
0x4000 0 10
"""

PERF_MAP = ("0x3000 10 wasm[8]::function[5061]::r_object\n"
            "0x2000 10 wasm[8]::function[4035]::_PyEval_EvalFrameDefault\n")


@pytest.fixture
def parsed(tmp_path):
    (tmp_path / "callgrind.out").write_text(CALLGRIND)
    (tmp_path / "perf.map").write_text(PERF_MAP)
    return costs(tmp_path / "callgrind.out", CodeMap.read(tmp_path / "perf.map"))


def test_jit_addresses_are_named_from_the_perf_map_and_the_rest_by_object(parsed):
    own, _ = parsed
    assert own == Counter({"libpython3.11.so.1.0:host_fn": 12,
                           "guest:_PyEval_EvalFrameDefault": 100,  # +8 and -8 stay inside
                           "guest:r_object": 9,
                           "???:0x0000000000004000": 10})  # past the map: not the guest's


def test_a_call_line_is_the_callees_inclusive_cost_not_the_callers_own(parsed):
    own, edges = parsed
    assert edges == Counter({("libpython3.11.so.1.0:host_fn",
                              "guest:_PyEval_EvalFrameDefault"): 100})
    assert own["libpython3.11.so.1.0:host_fn"] == 12


def test_groups_and_report_add_up_to_the_total(parsed):
    own, edges = parsed
    assert group_of("guest:_PyEval_EvalFrameDefault") == "interpreter loop"
    assert group_of("guest:r_object") == "marshal"
    assert group_of("guest:unicodekeys_lookup_unicode") == "dicts"
    assert group_of("guest:some_unknown_fn") == "other guest code"
    assert group_of("libpython3.11.so.1.0:host_fn") == "host (Python, wasmtime, libc)"
    lines = report(own, edges, top=2)
    assert lines[0].split()[1] == "131"  # 12 + 100 + 9 + 10
    assert lines[1].split()[2] == "109"  # guest code: the two mapped functions
    assert any("interpreter loop" in line and "100" in line for line in lines)
    assert lines[-2].endswith("guest:_PyEval_EvalFrameDefault")  # top 2, largest first
