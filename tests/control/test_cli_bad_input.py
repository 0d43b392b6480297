"""What a user gets wrong at the command line gets one clear line and exit 2, never a
traceback, and nothing is written where it should not be (an independent review's findings,
each run here as the real `trigger-engine` and `edge-host` processes)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge_module.host.config import ConfigError, EdgeConfig
from tests.servers import ROOT

RULES = ROOT / "rules"


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CONTROL_DATA_DIR": str(cwd / "control"),
            "TRIGGERS_STORE": str(cwd / "store"), "TRIGGERS_TRUSTED_KEYS": str(cwd / "trusted"),
            **env}
    return subprocess.run([sys.executable, "-m", "control_plane.cli", *args], cwd=cwd,
                          env=full, capture_output=True, text=True, timeout=120, check=False)


def clean_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_publishing_a_folder_without_packs_is_refused_unless_asked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "only.test.yaml").write_text("cases: []\n")
    assert run(["keys", "generate"], tmp_path).returncode == 0
    assert run(["publish", str(RULES)], tmp_path).returncode == 0
    clean_error(run(["publish", str(empty)], tmp_path), "no rule packs", "--allow-empty")
    status = run(["status"], tmp_path)
    assert "revision 1" in status.stdout, status.stdout  # still served
    done = run(["publish", "--allow-empty", str(empty)], tmp_path)
    assert done.returncode == 0 and "0 trigger(s)" in done.stdout, done.stderr


@pytest.mark.parametrize("name", ["TRIGGERS_STORE", "CONTROL_DATA_DIR"])
def test_a_setting_set_to_nothing_is_unset_not_the_current_folder(tmp_path, name):
    work = tmp_path / "here"
    work.mkdir()
    (work / "p.yaml").write_text((RULES / "pricing-discount.yaml").read_text())
    env = {name: ""}
    run(["keys", "generate"], work, **env)
    run(["publish", "p.yaml"], work, **env)
    assert not (work / "manifest.json").exists() and not (work / "keys").exists()
    assert not list(work.glob("*.token"))


@pytest.mark.parametrize("setting", ["CONTROL_PORT=abc", "CONTROL_PORT=99999",
                                     "CONTROL_PORT=-1", "CONTROL_MAX_REQUEST_BYTES=1MB",
                                     "CONTROL_FALSE_TRIGGER_WINDOW_S=30s",
                                     "CONTROL_RECALIBRATE_INTERVAL_S=nan",
                                     "CONTROL_LEARN_HOLDOUT_SHARE=1.5"])
def test_a_bad_control_setting_is_named(tmp_path, setting):
    name, _, value = setting.partition("=")
    clean_error(run(["status"], tmp_path, **{name: value}), name)


def test_a_damaged_signing_key_is_named(tmp_path):
    assert run(["keys", "generate"], tmp_path).returncode == 0
    [key] = (tmp_path / "control" / "keys").glob("*.key")
    key.write_text("not a key\n")
    clean_error(run(["publish", str(RULES)], tmp_path), key.name, "not a readable private key")


def test_an_s3_endpoint_that_is_not_a_url_is_named(tmp_path):
    clean_error(run(["status", "--store", "s3://bucket/prefix"], tmp_path,
                    TRIGGERS_S3_ENDPOINT_URL="notaurl"), "TRIGGERS_S3_ENDPOINT_URL")


@pytest.mark.parametrize("args", [["report", "--window", "nan"],
                                  ["audit", "--min-sessions", "-5"]])
def test_out_of_range_options_are_usage_errors(tmp_path, args):
    done = run(args, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_a_damaged_telemetry_store_is_named(tmp_path):
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "telemetry.sqlite3").write_bytes(b"not a database" * 100)
    clean_error(run(["report"], tmp_path), "telemetry store")


def test_non_finite_times_in_a_recording_are_counted_not_fatal(tmp_path):
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text("\n".join(json.dumps(r) for r in [
        {"session_id": "a", "now_ms": 1e999, "events": []},
        {"session_id": "b", "now_ms": 1_764_201_600_000,
         "events": [{"type": "page_view", "ts_ms": float("nan"), "url": "/"}]},
        {"session_id": "c", "now_ms": 1_764_201_600_000, "events": []},
    ]) + "\n")
    done = run(["simulate", str(RULES), "--sessions", str(sessions), "--format", "json"],
               tmp_path)
    assert "Traceback" not in done.stderr and done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["requests"] == 1 and sum(report["errors"].values()) == 2
    rrweb = tmp_path / "rec.json"
    rrweb.write_text('[{"type": 4, "timestamp": 1e999, "data": {"href": "https://x/p", '
                     '"width": 1, "height": 1}}, {"type": 3, "timestamp": NaN, "data": '
                     '{"source": 1, "positions": [{"x": 1e999, "y": 1, "timeOffset": 0}]}}]')
    done = run(["import", "rrweb", str(rrweb), "-o", str(tmp_path / "out.jsonl")], tmp_path)
    assert "Traceback" not in done.stderr and done.returncode in (0, 1, 2), done.stderr


# -- the edge host's settings --------------------------------------------------------------

@pytest.mark.parametrize("env", [
    {"EDGE_PORT": "99999"}, {"EDGE_DECIDE_DEADLINE_MS": "-1"}, {"EDGE_MAX_PENDING": "-5"},
    {"EDGE_SYNC_INTERVAL_S": "0"}, {"EDGE_SYNC_INTERVAL_S": "nan"},
    {"EDGE_TELEMETRY": "ture"}, {"EDGE_THREADS": "100000"}, {"EDGE_SESSION_TTL_S": "-1"},
    {"EDGE_MAX_BODY_BYTES": "-1"}, {"EDGE_ACQUIRE_TIMEOUT_S": "inf"},
    {"EDGE_LOAD_ATTEMPTS": "0"}, {"EDGE_LOG_LEVEL": "bogus"},
    {"EDGE_SESSION_TTL_S": "1e306"}, {"EDGE_OUTCOME_WINDOW_S": "1e300"},
    {"EDGE_SESSION_STORE": "redis://127.0.0.1:abc/0"},
    {"TRIGGERS_S3_ENDPOINT_URL": "notaurl"}, {"EDGE_CHANNEL_KINESIS_ENDPOINT": "notaurl"},
])
def test_an_edge_setting_that_cannot_work_is_refused(env):
    with pytest.raises(ConfigError) as refused:
        EdgeConfig.from_env(env)
    assert next(iter(env)) in str(refused.value)


@pytest.mark.parametrize("name", ["TRIGGERS_STORE", "EDGE_STATE_DIR", "TRIGGERS_TRUSTED_KEYS"])
def test_an_edge_place_set_to_nothing_keeps_its_default(name):
    assert EdgeConfig.from_env({name: ""}) == EdgeConfig.from_env({})


def test_an_empty_control_url_still_means_no_control_plane():
    assert EdgeConfig.from_env({"EDGE_CONTROL_URL": ""}).control_url == ""


def edge_host(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "EDGE_STATE_DIR": str(tmp_path / "edge"),
            "EDGE_COMPONENT": str(ROOT / "build" / "decision-engine.wasm"),
            "EDGE_CACHE_DIR": str(ROOT / "build" / "cache"), **env}
    return subprocess.run([sys.executable, "-m", "edge_module.host.server"], env=full,
                          capture_output=True, text=True, timeout=60, check=False)


def test_edge_host_refuses_a_port_in_use_in_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = edge_host(tmp_path, EDGE_PORT=str(port))
    clean_error(done, "EDGE_PORT", "cannot listen")


@pytest.mark.parametrize("content", [b"", b"ab", b"zz" * 40])
def test_edge_host_refuses_a_damaged_outcome_key_naming_the_file(tmp_path, content):
    """An empty or cut key file was used as the MAC key (outcome tokens anyone could make),
    a non-hex one killed every worker with a traceback."""
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "outcome.key").write_bytes(content)
    clean_error(edge_host(tmp_path), "outcome.key")


def test_edge_host_refuses_a_component_that_is_not_one(tmp_path):
    fake = tmp_path / "fake.wasm"
    fake.write_bytes(gzip.compress(b"not wasm"))
    clean_error(edge_host(tmp_path, EDGE_COMPONENT=str(fake)), "EDGE_COMPONENT")


@pytest.mark.parametrize("args", [["10", "0"], ["10", "-3"], ["0", "3"], ["x", "3"]])
def test_a_load_test_of_no_time_or_no_users_is_refused_before_it_starts(tmp_path, args):
    """`loadtest.run 10 0` ran Locust for ever; -3 failed after the stack had started."""
    done = subprocess.run([sys.executable, "-m", "loadtest.run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "expected 1 or more" in done.stderr or "is not a whole number" in done.stderr
    assert "Traceback" not in done.stderr


def test_build_sh_usage_lists_its_commands_and_nothing_else(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "build.sh"), "no-such-command"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "edge-function" in done.stderr + done.stdout
    assert "set -euo" not in done.stderr + done.stdout


def test_a_test_file_with_no_packs_beside_it_is_a_problem_not_a_pass(tmp_path):
    """Its "does not fire" cases all passed against an empty snapshot, exit 0."""
    tests = (RULES / "pricing-discount.test.yaml").read_text()
    (tmp_path / "alone.test.yaml").write_text(tests)
    done = run(["test", str(tmp_path / "alone.test.yaml")], tmp_path)
    assert done.returncode == 1 and "no rule packs beside this test file" in done.stderr, \
        (done.stdout, done.stderr)


@pytest.mark.parametrize("args", [["--out", "{tmp}"], ["--out", "{tmp}/no/such/x.jsonl"]])
def test_generators_name_an_output_they_cannot_write(tmp_path, args):
    args = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-m", "loadtest.generators", "--shape", "latent",
                           "--sessions", "3", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--out" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("args", [["--iterations", "0"], ["--triggers", "0"],
                                  ["--build", "{tmp}"], ["--compare", "{tmp}"]])
def test_bench_refuses_what_it_cannot_measure(tmp_path, args):
    args = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-m", "loadtest.bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("module, args", [
    ("loadtest.bench_instructions", ["--decisions", "0"]),
    ("loadtest.bench_instructions", ["--triggers", "0"]),
    ("loadtest.bench_instructions", ["--build", "{tmp}"]),
    ("loadtest.bench_instructions", ["--compare", "{tmp}"]),
    ("loadtest.guest_profile", ["--decisions", "0"]),
    ("loadtest.guest_profile", ["--top", "-1"]),
    ("loadtest.guest_profile", ["--build", "{tmp}"])])
def test_instruction_count_refuses_what_it_cannot_measure(tmp_path, module, args):
    args = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-m", module, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("host", ["::1", "127.0.0.1"])
def test_edge_host_start_checks_take_ipv6_and_ipv4_addresses(tmp_path, host):
    """The pre-start check bound an IPv4 socket only: EDGE_HOST=::1 was refused."""
    from edge_module.host.server import _cannot_start

    if ":" in host:
        try:
            socket.create_server((host, 0), family=socket.AF_INET6).close()
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")
    config = EdgeConfig.from_env({"EDGE_HOST": host, "EDGE_PORT": "0",
                                  "EDGE_STATE_DIR": str(tmp_path / "edge"),
                                  "EDGE_COMPONENT": str(ROOT / "build" / "decision-engine.wasm"),
                                  "EDGE_METRICS_ADDRESS": f"[{host}]:0" if ":" in host
                                  else f"{host}:0"})
    assert _cannot_start(config) is None


def test_a_pack_name_too_long_for_the_registry_is_a_problem_before_anything_is_published(
        tmp_path):
    """101 characters passed validation, was published, and then the copy into the registry
    (which names files by pack) failed with a traceback: edges served what it did not hold."""
    long_name = "p" * 101
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "long.yaml").write_text(
        (RULES / "pricing-discount.yaml").read_text().replace(
            "pack: pricing-discount", f"pack: {long_name}"))
    assert run(["keys", "generate"], tmp_path).returncode == 0
    done = run(["publish", str(tmp_path / "packs")], tmp_path)
    assert done.returncode == 1 and "at most 100 characters" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_generators_write_through_a_link_or_device_they_are_given(tmp_path):
    """Written beside and renamed, /dev/stdout (a link) was replaced by a file."""
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    done = subprocess.run([sys.executable, "-m", "loadtest.generators", "--shape", "latent",
                           "--sessions", "3", "--out", str(link)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and len(target.read_text().splitlines()) == 3


def test_a_date_that_is_not_one_is_named_as_such_at_its_place():
    from control_plane.rulepack import RulePackError, load_pack

    text = (RULES / "pricing-discount.yaml").read_text().replace(
        "pack: pricing-discount", "pack: pricing-discount\ndescription: 2024-13-45")
    with pytest.raises(RulePackError) as refused:
        load_pack(text, "p.yaml")
    [problem] = [p for p in refused.value.problems if "2024" in p.message or "valid" in p.message]
    assert "not a valid timestamp" in problem.message and "digits" not in problem.message
    assert problem.line == text.splitlines().index("description: 2024-13-45") + 1


def test_an_output_in_a_missing_folder_is_refused_before_any_work(tmp_path):
    """`import rrweb -o OUT --report nodir/r.json` wrote OUT and then failed; `evaluate
    --snapshot-out nodir/x.json` ran the whole evaluation before failing."""
    recording = tmp_path / "rec.json"
    recording.write_text('[{"type": 4, "timestamp": 1764201600000, "data": {"href": '
                         '"https://shop.example/pricing", "width": 1280, "height": 800}}]')
    out = tmp_path / "out.jsonl"
    done = run(["import", "rrweb", str(recording), "-o", str(out), "--report",
                str(tmp_path / "nodir" / "r.json")], tmp_path)
    assert done.returncode == 2 and "does not exist" in done.stderr, done.stderr
    assert not out.exists()
    done = run(["evaluate", str(RULES), "--trigger", "pricing-discount", "--train",
                str(recording), "--judge", str(recording), "--snapshot-out",
                str(tmp_path / "nodir" / "x.json")], tmp_path)
    assert done.returncode == 2 and "does not exist" in done.stderr, done.stderr


def test_a_reader_that_stops_reading_ends_the_command_quietly():
    """`trigger-engine report | head` printed "Error: Broken pipe" and exited 2, as if the
    command had been misused."""
    import click
    from click.testing import CliRunner

    from control_plane.cli.group import EXIT_PIPE, _Group

    @click.group(cls=_Group)
    def group() -> None:
        pass

    @group.command()
    def spew() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    result = CliRunner().invoke(group, ["spew"])
    assert result.exit_code == EXIT_PIPE == 141
    assert "Broken pipe" not in result.output + (result.stderr or "")
