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
summary: 131

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

# as wasmtime writes it: most functions twice, under their own name and their wasm path
PERF_MAP = ("0x3000 10 wasm[8]::function[5061]::r_object\n"
            "0x3000 10 r_object\n"
            "0x2000 10 _PyEval_EvalFrameDefault\n"
            "0x2000 10 wasm[8]::function[4035]::_PyEval_EvalFrameDefault\n"
            "0x5000 20 component-trampolines[3]-wasm-call-component-lower-import[1]\n")


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


def parse(tmp_path, text, perf_map=PERF_MAP):
    (tmp_path / "cg").write_text(text)
    (tmp_path / "map").write_text(perf_map)
    return costs(tmp_path / "cg", CodeMap.read(tmp_path / "map"))


def test_a_call_target_relative_to_the_last_position_names_its_callee(tmp_path):
    """Callgrind writes a target within 100 bytes of the last position relative to it."""
    own, edges = parse(tmp_path, """events: Ir
positions: instr line
ob=(1) ???
fn=(1) 0x0000000000002000
0x2000 0 5
cfn=(2) 0x0000000000003000
calls=1 +0x1000 0
* 0 40
+2 0 5
fn=(2)
0x3000 0 40
fn=(3) 0x0000000000005000
0x5000 0 1
totals: 51
""")
    assert edges == Counter({("guest:_PyEval_EvalFrameDefault", "guest:r_object"): 40})
    assert own == Counter({"guest:_PyEval_EvalFrameDefault": 10, "guest:r_object": 40,
                           "guest:component-trampolines[3]-wasm-call-component-lower-import[1]": 1})


def test_instructions_are_read_from_their_column_and_jump_lines_cost_nothing(tmp_path):
    own, _ = parse(tmp_path, """events: Dr Ir Dw
positions: instr line
ob=(1) /lib/libc.so.6
fn=(1) memcpy
0x100 12 7 100 3
jump=4 +8 12
+8 12
+4 13 9 50
+4 13 2
totals: 18 150 3
""")
    assert own == Counter({"libc.so.6:memcpy": 150})  # a missing trailing column is 0


def test_a_guest_function_calling_itself_is_not_an_edge_and_a_second_call_names_its_object(
        tmp_path):
    own, edges = parse(tmp_path, """events: Ir
positions: instr line
ob=(1) /usr/lib/libpython3.11.so.1.0
fn=(1) caller
0x1000 0 1
cob=(2) ???
cfn=(2) 0x0000000000002000
calls=1 0x2000 0
* 0 30
cfn=(3) helper
calls=1 0x1100 0
* 0 4
fn=(3)
0x1100 0 4
ob=(2)
fn=(2)
0x2000 0 10
cfn=(4) 0x0000000000002004
calls=1 0x2004 0
* 0 20
+4 0 20
totals: 35
""")
    assert edges == Counter({("libpython3.11.so.1.0:caller", "guest:_PyEval_EvalFrameDefault"): 30,
                             ("libpython3.11.so.1.0:caller", "libpython3.11.so.1.0:helper"): 4})
    lines = report(own, edges, top=1)
    assert any(line.split()[:2] == ["marshal.loads", "0"] for line in lines)


def test_the_report_gives_an_entry_points_inclusive_cost(tmp_path):
    own, edges = parse(tmp_path, """events: Ir
positions: instr line
ob=(1) ???
fn=(1) 0x0000000000002000
0x2000 0 10
cfn=(2) 0x0000000000006000
calls=1 0x6000 0
* 0 90
fn=(2)
0x6000 0 90
totals: 100
""", PERF_MAP + "0x6000 40 wasm[8]::function[5081]::marshal_loads\n")
    [line] = [line for line in report(own, edges, top=1) if "marshal.loads" in line]
    assert line.split()[1] == "90" and line.split()[2] == "90.0"


def test_costs_that_do_not_add_up_to_the_files_total_are_an_error(tmp_path):
    with pytest.raises(ValueError, match="add up to 5, the file's total is 6"):
        parse(tmp_path, "events: Ir\npositions: instr\nfn=(1) f\n0x10 5\ntotals: 6\n")


def test_overlapping_code_ranges_are_an_error(tmp_path):
    (tmp_path / "map").write_text("0x2000 10 a\n0x2008 10 b\n")
    with pytest.raises(ValueError, match="overlap"):
        CodeMap.read(tmp_path / "map")
