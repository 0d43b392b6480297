"""`trigger-engine`: every command over good and bad packs, and the exit codes scripts see."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from control_plane.cli import cli
from edge_module.core import load_snapshot
from loadtest.synthetic_sessions import generate

RULES = Path(__file__).resolve().parents[2] / "rules"
SPRAWL = """\
pack: sprawl
triggers:
  - id: a
    page: /pricing
    when: [{dwell: ">= 3s"}]
    action: {content: discount-nudge-10}
    cap: {per_session: 1}
  - id: b
    page: /pricing
    when: [{dwell: ">= 3s"}]
    action: {content: discount-nudge-10}
"""


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """A copy of the shipped rules folder: packs, tests and catalog."""
    return Path(shutil.copytree(RULES, tmp_path / "rules"))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture(autouse=True)
def trusted_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Public keys go to a temporary folder, never the working tree's .var."""
    monkeypatch.setenv("TRIGGERS_TRUSTED_KEYS", str(tmp_path / "trusted"))
    return tmp_path / "trusted"


def publish(rules: Path, store: Path, tmp_path: Path) -> Result:
    assert invoke("keys", "generate", "--data-dir", tmp_path / "control").exit_code == 0
    return invoke("publish", rules, "--store", store, "--data-dir", tmp_path / "control")


def test_the_group_help_documents_the_exit_codes():
    text = invoke("--help").output
    assert "Exit codes" in text
    assert all(f"  {code}  " in text for code in (0, 1, 2))


# validate


def test_validate_accepts_the_shipped_rules_and_their_catalog(rules):
    result = invoke("validate", rules)
    assert result.exit_code == 0
    assert result.output == (f"ok: 2 pack(s), 2 trigger(s), content ids checked against "
                             f"{rules / 'catalog.yaml'}\n")


def test_validate_reports_the_problems_of_every_file_at_once(rules):
    (rules / "pricing-discount.yaml").write_text(
        (rules / "pricing-discount.yaml").read_text().replace("dwell", "dwel"))
    (rules / "checkout-reminder.yaml").write_text(
        (rules / "checkout-reminder.yaml").read_text().replace("priority", "priorty"))
    result = invoke("validate", rules)
    assert result.exit_code == 1
    assert "2 problem(s)" in result.stderr
    assert f"{rules / 'pricing-discount.yaml'}:11:9:" in result.stderr
    assert f"{rules / 'checkout-reminder.yaml'}:14:7:" in result.stderr


def test_validate_checks_content_ids_against_a_catalog_given_explicitly(tmp_path):
    catalog = tmp_path / "elsewhere.yaml"
    catalog.write_text("content:\n  discount-nudge-10: the nudge\n")
    result = invoke("validate", RULES / "checkout-reminder.yaml", "--catalog", catalog)
    assert result.exit_code == 1
    assert "content 'cart-reminder' is not in the content catalog" in result.stderr


def test_validate_reports_a_malformed_catalog_at_its_position(rules):
    (rules / "catalog.yaml").write_text("content:\n  cart-reminder:\n")
    result = invoke("validate", rules)
    assert result.exit_code == 1
    assert f"{rules / 'catalog.yaml'}:2:17: content 'cart-reminder' has no description" \
        in result.stderr


def test_validate_of_a_missing_path_is_a_usage_error(tmp_path):
    assert invoke("validate", tmp_path / "nope.yaml").exit_code == 2


# compile


def test_compile_prints_a_snapshot_the_decision_core_loads(rules):
    result = invoke("compile", rules)
    assert result.exit_code == 0
    assert sorted(load_snapshot(result.stdout).by_id) == ["checkout-reminder", "pricing-discount"]


def test_compile_writes_the_snapshot_to_a_file(rules, tmp_path):
    assert invoke("compile", rules, "-o", tmp_path / "snap.json").exit_code == 0
    assert load_snapshot((tmp_path / "snap.json").read_text()).revision == "local"


def test_compile_of_a_bad_pack_writes_nothing_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pack: bad\n")
    result = invoke("compile", bad, "-o", tmp_path / "snap.json")
    assert result.exit_code == 1
    assert not (tmp_path / "snap.json").exists()


# test


def test_test_runs_every_case_beside_the_packs_and_summarises(rules):
    result = invoke("test", rules)
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "10 passed, 0 failed"


def test_test_shows_a_failing_case_with_expected_and_seen_actions(rules):
    path = rules / "pricing-discount.test.yaml"
    path.write_text(path.read_text().replace("{at: 3s, trigger: pricing-discount, content",
                                             "{at: 4s, trigger: pricing-discount, content"))
    result = invoke("test", path)
    assert result.exit_code == 1
    assert f"FAIL {path}:6:11  fires once an engaged reader" in result.output
    assert "    + " in result.output and "    - " in result.output
    assert result.output.splitlines()[-1] == "5 passed, 1 failed"


def test_test_reports_problems_in_a_test_file_at_their_position(rules):
    path = rules / "checkout-reminder.test.yaml"
    path.write_text(path.read_text().replace("expect: []", "expcet: []"))
    result = invoke("test", path)
    assert result.exit_code == 1
    assert f"{path}:26:5: [does not remind a visitor who never abandons the cart] unknown key " \
           "'expcet'" in result.stderr


def test_test_without_any_test_file_is_a_usage_error(tmp_path):
    (tmp_path / "p.yaml").write_text((RULES / "pricing-discount.yaml").read_text())
    result = invoke("test", tmp_path)
    assert result.exit_code == 2
    assert "no rule-pack tests" in result.stderr


def test_test_in_json_counts_passed_and_failed(rules):
    doc = json.loads(invoke("test", rules, "--format", "json").stdout)
    assert (doc["passed"], doc["failed"], len(doc["cases"])) == (10, 0, 10)


# lint


def test_lint_finds_nothing_in_the_shipped_rules(rules):
    result = invoke("lint", rules)
    assert (result.exit_code, result.stdout) == (0, "")


def test_lint_prints_findings_as_file_line_column_code_and_exits_1(tmp_path):
    (tmp_path / "sprawl.yaml").write_text(SPRAWL)
    result = invoke("lint", tmp_path)
    assert result.exit_code == 1
    path = tmp_path / "sprawl.yaml"
    duplicate = (f"{path}:8:9: L001 [b] duplicates a ({path}:3:9): same pages, event and "
                 "conditions, so the two always fire together (both show discount-nudge-10); "
                 "merge them or tell them apart")
    uncapped = (f"{path}:8:9: L004 [b] has no per_session cap: it can fire again on every "
                "page view; add cap: {per_session: N}")
    assert result.stdout.splitlines() == [duplicate, uncapped]


def test_lint_in_json_lists_findings_with_their_codes(tmp_path):
    (tmp_path / "sprawl.yaml").write_text(SPRAWL)
    doc = json.loads(invoke("lint", tmp_path, "--format", "json").stdout)
    assert [(f["code"], f["line"], f["column"]) for f in doc["findings"]] == [
        ("L001", 8, 9), ("L004", 8, 9)]


def test_lint_skips_ignored_rules(tmp_path):
    (tmp_path / "sprawl.yaml").write_text(SPRAWL)
    result = invoke("lint", tmp_path, "--ignore", "L001", "--ignore", "L004")
    assert result.exit_code == 0


def test_lint_of_an_invalid_pack_reports_problems_in_json(tmp_path):
    (tmp_path / "bad.yaml").write_text("pack: bad\n")
    result = invoke("lint", tmp_path, "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"][0]["message"] == \
        "the rule pack is missing the required key 'triggers'"


# diff


def test_diff_of_two_pack_files_says_what_changed(tmp_path):
    new = tmp_path / "pricing-discount.yaml"
    new.write_text((RULES / "pricing-discount.yaml").read_text().replace(">= 3s", ">= 5s"))
    result = invoke("diff", RULES / "pricing-discount.yaml", new)
    assert (result.exit_code, result.output) == (
        0, "pricing-discount: dwell threshold 3s -> 5s\n")


def test_diff_between_published_revisions(rules, store, tmp_path):
    publish(rules, store, tmp_path)
    path = rules / "pricing-discount.yaml"
    path.write_text(path.read_text().replace('">= 78%"', '">= 90%"'))
    publish(rules, store, tmp_path)
    result = invoke("diff", "1", "2", "--store", store)
    assert result.output == "pricing-discount: scroll_depth threshold 78% -> 90%\n"


def test_diff_of_the_published_revision_and_the_same_folder_has_no_differences(
        rules, store, tmp_path):
    publish(rules, store, tmp_path)
    result = invoke("diff", "current", rules, "--store", store, "--exit-code")
    assert (result.exit_code, result.output) == (0, "no differences\n")


def test_diff_with_exit_code_exits_1_on_differences(tmp_path):
    new = tmp_path / "p.yaml"
    new.write_text((RULES / "pricing-discount.yaml").read_text().replace("10", "20"))
    result = invoke("diff", RULES / "pricing-discount.yaml", new, "--exit-code")
    assert result.exit_code == 1


def test_diff_of_an_unknown_revision_is_a_usage_error(rules, store, tmp_path):
    publish(rules, store, tmp_path)
    result = invoke("diff", "9", "current", "--store", store)
    assert result.exit_code == 2
    assert "revision 9 was never published" in result.stderr


def test_diff_of_something_that_is_neither_path_nor_revision_is_a_usage_error():
    assert invoke("diff", "no-such-thing", "current").exit_code == 2


# simulate


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "sessions.jsonl"
    path.write_text("".join(line + "\n" for line in generate(40)))
    return path


def test_simulate_reports_each_trigger_and_the_overlap_matrix(rules, recording):
    result = invoke("simulate", rules, "--sessions", recording)
    assert result.exit_code == 0
    assert "  1  checkout-reminder" in result.stdout
    assert "  2  pricing-discount " in result.stdout
    assert "overlap: sessions in which both triggers fired" in result.stdout


def test_simulate_in_json_gives_counts_per_trigger(rules, recording):
    doc = json.loads(invoke("simulate", rules, "--sessions", recording, "--format",
                            "json").stdout)
    assert doc["sessions"] == 40
    assert [t["trigger"] for t in doc["triggers"]] == ["checkout-reminder", "pricing-discount"]


def test_simulate_of_a_recording_that_is_not_text_is_an_environment_error(rules, tmp_path):
    (tmp_path / "sessions.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    result = invoke("simulate", rules, "--sessions", tmp_path / "sessions.jsonl")
    assert result.exit_code == 2
    assert "not UTF-8" in result.stderr


def test_simulate_needs_a_recording(rules):
    assert invoke("simulate", rules).exit_code == 2


def test_simulate_of_a_recording_it_could_not_use_at_all_is_an_error(rules, recording):
    refused = recording.parent / "refused.jsonl"
    refused.write_text('{"session_id": "a", "events": []}\nnot json\n')
    result = invoke("simulate", rules, "--sessions", refused)
    assert result.exit_code == 2
    assert "invalid_json" in result.stdout and "line 2: not JSON" in result.stdout
    assert "refused.jsonl: nothing was simulated: all 2 of its requests were refused" \
        in result.stderr
    (recording.parent / "empty.jsonl").write_text("\n")
    result = invoke("simulate", rules, "--sessions", recording.parent / "empty.jsonl")
    assert result.exit_code == 2 and "it has no request" in result.stderr
    # one request decided is a simulation, whatever else was refused
    with recording.open("a") as fh:
        fh.write("not json\n")
    result = invoke("simulate", rules, "--sessions", recording)
    assert result.exit_code == 0 and "invalid_json" in result.stdout


# schema


def test_schema_writes_the_schema_with_the_catalog_beside_it(tmp_path):
    (tmp_path / "catalog.yaml").write_text("content:\n  spring-sale: Spring sale banner\n"
                                           "  exit-survey: Two-question exit survey\n")
    assert invoke("schema", "-o", tmp_path / "schema.json").exit_code == 0
    schema = json.loads((tmp_path / "schema.json").read_text())
    content = schema["definitions"]["action"]["properties"]["content"]
    assert content["enum"] == ["spring-sale", "exit-survey"]
    assert content["enumDescriptions"] == ["Spring sale banner", "Two-question exit survey"]


def test_schema_check_passes_on_the_committed_schema():
    assert invoke("schema", "-o", RULES / "schema.json", "--check").exit_code == 0


def test_schema_check_fails_on_a_stale_schema(tmp_path):
    (tmp_path / "schema.json").write_text("{}\n")
    result = invoke("schema", "-o", tmp_path / "schema.json", "--check")
    assert result.exit_code == 1
    assert "is stale" in result.stderr


# publish, revisions, rollback, status


def test_publish_copies_the_packs_and_catalog_into_the_registry(rules, store, tmp_path):
    result = publish(rules, store, tmp_path)
    assert result.exit_code == 0
    assert result.output.startswith("published revision 1: 2 trigger(s)")
    registry = tmp_path / "control" / "packs"
    assert sorted(p.name for p in registry.iterdir()) == [
        "catalog.yaml", "checkout-reminder.yaml", "pricing-discount.yaml"]


def _one_pack(rules: Path, name: str, tmp_path: Path) -> Path:
    """A folder holding one of the shipped packs, without the catalog."""
    folder = tmp_path / f"only-{name}"
    folder.mkdir()
    shutil.copyfile(rules / f"{name}.yaml", folder / f"{name}.yaml")
    return folder


def test_publishing_a_folder_that_leaves_out_a_live_pack_is_refused_and_names_it(
        rules, store, tmp_path):
    """A review published one pack from a folder: every other live pack, published
    through the API, went off without a word; `./build.sh up` did it at every start."""
    publish(rules, store, tmp_path)
    only = _one_pack(rules, "pricing-discount", tmp_path)
    control = tmp_path / "control"
    result = invoke("publish", only, "--store", store, "--data-dir", control)
    assert result.exit_code == 2
    assert "revision 1 serves pack(s) checkout-reminder" in result.stderr
    assert "--replace" in result.stderr
    skipped = invoke("publish", only, "--store", store, "--data-dir", control,
                     "--skip-if-dropping")
    assert skipped.exit_code == 0 and skipped.output.startswith("not published: revision 1")
    assert invoke("status", "--store", store).output.startswith("published: revision 1")
    replaced = invoke("publish", only, "--store", store, "--data-dir", control, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert replaced.output.startswith("published revision 2: 1 trigger(s) from "
                                      "pricing-discount")
    assert replaced.output.rstrip().endswith("switched off: checkout-reminder")
    assert not (control / "packs" / "checkout-reminder.yaml").exists()  # not back by API


def test_a_folder_without_a_catalog_is_checked_against_the_control_planes(
        rules, store, tmp_path):
    """Published from a folder without catalog.yaml, a pack's unknown content id went to
    the edges: the same pack through the API is refused for it."""
    publish(rules, store, tmp_path)  # the registry now holds the shipped catalog
    only = _one_pack(rules, "pricing-discount", tmp_path)
    pack = only / "pricing-discount.yaml"
    pack.write_text(pack.read_text().replace("discount-nudge-10", "no-such-content", 1))
    result = invoke("publish", only, "--store", store, "--data-dir", tmp_path / "control",
                    "--replace")
    assert result.exit_code == 1
    assert "no-such-content" in result.output + result.stderr
    assert invoke("status", "--store", store).output.startswith("published: revision 1")


def test_publish_of_a_bad_pack_publishes_nothing(tmp_path, store):
    (tmp_path / "bad.yaml").write_text("pack: bad\n")
    assert invoke("publish", tmp_path / "bad.yaml", "--store", store).exit_code == 1
    assert invoke("status", "--store", store).output == "published: nothing yet\n"


def test_rollback_serves_the_earlier_revision_and_revisions_lists_it(rules, store, tmp_path):
    publish(rules, store, tmp_path)
    publish(rules, store, tmp_path)
    result = invoke("rollback", "1", "--store", store, "--data-dir", tmp_path / "control")
    assert result.exit_code == 0
    assert result.output.startswith("rolled back to revision 1 (was 2)")
    assert invoke("revisions", "--store", store).output.splitlines()[0].endswith(
        "(rollback from 2)")


def test_rollback_to_the_current_revision_does_nothing(rules, store, tmp_path):
    publish(rules, store, tmp_path)
    result = invoke("rollback", "1", "--store", store, "--data-dir", tmp_path / "control")
    assert result.exit_code == 0
    assert result.output == "revision 1 is already current; nothing to do\n"


def test_rollback_to_an_unknown_revision_is_refused_with_exit_2(rules, store, tmp_path):
    publish(rules, store, tmp_path)
    result = invoke("rollback", "5", "--store", store, "--data-dir", tmp_path / "control")
    assert result.exit_code == 2
    assert "revision 5 was never published (published: 1)" in result.stderr


def test_status_shows_the_published_revision(rules, store, tmp_path):
    publish(rules, store, tmp_path)
    result = invoke("status", "--store", store)
    assert result.exit_code == 0
    assert result.output.startswith("published: revision 1 (")


class _Edge(BaseHTTPRequestHandler):
    revision: Any = None

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "revision": self.revision}).encode()
        self.send_response(200 if self.revision is not None else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def edge() -> Iterator[tuple[str, type[_Edge]]]:
    """A stand-in edge host answering /healthz with the revision set on the handler."""
    handler = type("Edge", (_Edge,), {"revision": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_status_with_an_edge_serving_the_published_revision_exits_0(rules, store, tmp_path,
                                                                      edge):
    url, handler = edge
    publish(rules, store, tmp_path)
    handler.revision = "1"
    result = invoke("status", "--store", store, "--edge", url)
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == f"edge {url}: serving revision 1 (up to date)"


def test_status_with_an_edge_serving_another_revision_exits_1(rules, store, tmp_path, edge):
    url, handler = edge
    publish(rules, store, tmp_path)
    publish(rules, store, tmp_path)
    handler.revision = "1"
    result = invoke("status", "--store", store, "--edge", url)
    assert result.exit_code == 1
    assert "serving revision 1, not the published revision 2" in result.output


def test_status_with_an_edge_without_a_snapshot_exits_1(rules, store, tmp_path, edge):
    url, _ = edge
    publish(rules, store, tmp_path)
    result = invoke("status", "--store", store, "--edge", url)
    assert result.exit_code == 1
    assert "serving no snapshot" in result.output


def test_status_with_an_unreachable_edge_exits_2(store, free_port):
    result = invoke("status", "--store", store, "--edge", f"http://127.0.0.1:{free_port}")
    assert result.exit_code == 2
    assert "cannot reach the edge host" in result.stderr


def test_report_and_audit_take_the_consoles_periods(tmp_path: Path) -> None:
    import json
    import time

    from control_plane.telemetry.telemetry_store import TelemetryStore

    now = int(time.time() * 1000)
    store = TelemetryStore(tmp_path / "telemetry.sqlite3")
    store.ingest([{"kind": "decision", "id": f"d{i}", "session": f"s{i}", "ts_ms": ts,
                   "fired": ["a"]} for i, ts in enumerate((now - 10 * 86_400_000,
                                                           now - 3_600_000))])

    def fires(*period: str) -> int:
        done = invoke("report", "--data-dir", tmp_path, "--format", "json", *period)
        assert done.exit_code == 0, done.output
        return sum(row["fires"] for row in json.loads(done.output)["rows"])

    assert (fires(), fires("--period", "30d"), fires("--period", "7d")) == (2, 2, 1)
    audited = invoke("audit", "--data-dir", tmp_path, "--format", "json", "--period", "24h")
    assert json.loads(audited.output)["sessions"] == 1
    assert invoke("report", "--data-dir", tmp_path, "--period", "1y").exit_code == 2


def test_a_bug_is_one_line_and_exit_70_and_debug_shows_where(monkeypatch):
    import control_plane.cli.authoring as authoring

    def broken(*args, **kwargs):
        raise RuntimeError("something no input should cause")

    monkeypatch.setattr(authoring, "load_pack_set", broken)
    runner = CliRunner()
    plain = runner.invoke(cli, ["validate", str(RULES)])
    assert plain.exit_code == 70
    assert "internal error: RuntimeError: something no input should cause" in plain.output
    assert "Traceback" not in plain.output
    debug = runner.invoke(cli, ["--debug", "validate", str(RULES)])
    assert debug.exit_code == 70 and "Traceback" in debug.output and "broken" in debug.output
