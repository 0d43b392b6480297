"""What the packs, revisions and fleet pages show, arranged from the functions the CLI
uses: `load_pack_set` (`trigger-engine validate`), `lint.lint` (`lint`),
`pack_diff.diff_snapshots` (`diff`), `publishing.revisions` (`revisions`) and the fleet
registry (`GET /v1/fleet`)."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from edge_module.distribution.edge_store import EdgeStore, StoreError

from ..authoring import lint as linting
from ..authoring import pack_diff
from ..distribution import change_log, publishing
from ..distribution.fleet import FleetRegistry
from ..distribution.pack_registry import PackRegistry
from ..rulepack import (
    Pack,
    Problem,
    RulePackError,
    compile_snapshot,
    load_pack_file,
    load_pack_set,
)


def when(ms: int | None) -> str:
    """A time as the CLI prints it (`trigger-engine revisions`)."""
    return "never" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def short(problem: Problem) -> str:
    """A problem named by its file's name (the registry's folder is no news)."""
    return f"{Path(problem.file).name}, line {problem.line}: {problem.message}"


def _catalog(registry: PackRegistry) -> Path | None:
    return registry.catalog_path if registry.catalog_path.is_file() else None


def checked_packs(registry: PackRegistry) -> dict[str, Any]:
    """The registry's packs checked as `trigger-engine validate` and `lint` check a folder:
    problems (alone, together, against the catalog) and lint findings, by pack name."""
    paths = {str(registry.path(name)): name for name in registry.names()}
    problems: dict[str, list[Problem]] = defaultdict(list)
    findings: dict[str, list[linting.Finding]] = defaultdict(list)
    other: list[Problem] = []  # the catalog's own problems, say
    packs: dict[str, Pack] = {}
    try:
        for pack in load_pack_set(list(paths), _catalog(registry)).packs:
            packs[paths[pack.file]] = pack
    except RulePackError as exc:
        for problem in exc.problems:
            name = paths.get(problem.file)
            (problems[name] if name else other).append(problem)
    linted = True
    try:  # as `lint` does: unlisted content is a finding there, not a problem
        pack_set = load_pack_set(list(paths), _catalog(registry), check_content=False)
    except RulePackError:
        linted = False
    else:
        packs.update((paths[p.file], p) for p in pack_set.packs)
        for finding in linting.lint(pack_set.packs, pack_set.catalog):
            findings[paths.get(finding.file, "")].append(finding)
    for path, name in paths.items():  # valid alone, though the set is not: still described
        if name not in packs and not problems[name]:
            try:
                packs[name] = load_pack_file(path)
            except RulePackError:
                pass
    return {"names": list(paths.values()), "packs": packs, "problems": problems,
            "other_problems": other, "findings": findings, "linted": linted}


def pack_overview(registry: PackRegistry) -> dict[str, Any]:
    """Each pack: description, triggers, whether it is valid, how many lint findings."""
    checked = checked_packs(registry)
    rows = []
    for name in checked["names"]:
        pack = checked["packs"].get(name)
        rows.append({"name": name,
                     "description": pack.description if pack else None,
                     "triggers": [t.id for t in pack.triggers] if pack else [],
                     "problems": len(checked["problems"][name]),
                     "findings": len(checked["findings"][name]) if checked["linted"] else None})
    return {"packs": rows, "other_problems": checked["other_problems"],
            "valid": not any(r["problems"] for r in rows) and not checked["other_problems"]}


def pack_page(registry: PackRegistry, name: str) -> dict[str, Any] | None:
    """One pack's YAML line by line, each line with the problems and findings written at
    it; None if the registry has no such pack."""
    source = registry.source(name)
    if source is None:
        return None
    checked = checked_packs(registry)
    problems = checked["problems"][name]
    findings = checked["findings"][name]
    at: dict[int, dict[str, list[Any]]] = defaultdict(lambda: {"problems": [], "findings": []})
    count = len(source.splitlines()) or 1
    for problem in problems:  # a problem past the end (a missing key) shows on the last line
        at[min(max(problem.line, 1), count)]["problems"].append(problem)
    for finding in findings:
        at[min(max(finding.line, 1), count)]["findings"].append(finding)
    lines = [{"no": n, "text": text, **at.get(n, {"problems": [], "findings": []})}
             for n, text in enumerate(source.splitlines() or [""], start=1)]
    pack = checked["packs"].get(name)
    return {"name": name, "lines": lines, "problems": problems, "findings": findings,
            "linted": checked["linted"], "pack": pack,
            "triggers": [{"id": t.id, "description": t.description, "line": t.line,
                          "pages": list(t.pages), "content": t.action.content}
                         for t in pack.triggers] if pack else []}


def history(store: EdgeStore, data_dir: str) -> list[dict[str, Any]]:
    """`trigger-engine revisions`, newest first, each with who made it (the audit trail)."""
    who = change_log.by_sequence(data_dir)
    rows = []
    for entry in publishing.revisions(store):
        change = who.get(entry.get("sequence"))  # type: ignore[arg-type]
        if change is not None:
            by = change.by if change.via == "api" else f"{change.by} ({change.role})"
        elif "recalibrated_from" in entry:
            by = "recalibration job"
        else:
            by = None  # the CLI, or before the trail was kept
        rows.append({**entry, "action": "rollback" if "rollback_from" in entry else "publish",
                     "by": by, "when": when(entry.get("published_ms"))})
    return rows


def published_numbers(store: EdgeStore) -> list[int]:
    """The revisions ever published (a rollback names one again), newest first."""
    return sorted({int(r["revision"]) for r in publishing.revisions(store)
                   if "rollback_from" not in r}, reverse=True)


def revision_diff(store: EdgeStore, old: int, new: int) -> list[pack_diff.Change]:
    """`trigger-engine diff OLD NEW` on two published revisions (`RevisionError`)."""
    return pack_diff.diff_snapshots(publishing.published_snapshot(store, old),
                                    publishing.published_snapshot(store, new))


def publish_plan(registry: PackRegistry, store: EdgeStore) -> dict[str, Any]:
    """What publishing the registry now would do: the next number, the packs, and what
    changes against the served revision (`trigger-engine diff current <registry>`)."""
    current = publishing.current(store)
    numbers = published_numbers(store)
    plan: dict[str, Any] = {"current": current, "next": (numbers[0] if numbers else 0) + 1,
                            "packs": [], "changes": None, "error": None}
    try:
        packs = registry.packs()
        registry.check_content(packs)
    except RulePackError as exc:
        plan["error"] = f"the registry's packs do not validate: {short(exc.problems[0])}"
        return plan
    plan["packs"] = [p.name for p in packs]
    if not packs:
        plan["error"] = "the registry holds no rule packs; submit one first"
    elif current is not None:
        plan["changes"] = pack_diff.diff_snapshots(publishing.published_snapshot(store),
                                                   compile_snapshot(packs, "registry", 0))
    return plan


def rollback_plan(store: EdgeStore, revision: int) -> dict[str, Any]:
    """What rolling back to `revision` would do: what is served instead, and what changes
    (`trigger-engine diff current N`); `RevisionError` if it cannot be done."""
    current = publishing.current(store)
    if current is None:
        raise publishing.RevisionError("not_published", "nothing has been published yet")
    changes = pack_diff.diff_snapshots(publishing.published_snapshot(store),
                                       publishing.published_snapshot(store, revision))
    return {"current": current, "revision": revision, "changes": changes}


MAX_FLEET_ROWS = 200


def fleet_view(fleet: FleetRegistry, store: EdgeStore) -> dict[str, Any]:
    """`GET /v1/fleet`: every edge against the published revision. With the store away the
    edges are still shown (their sync errors are what an operator needs then), against
    no revision, and `store_error` says why."""
    store_error = None
    try:
        current = publishing.current(store)
    except StoreError as exc:
        current, store_error = None, str(exc)
    revision = int(current["revision"]) if current else None
    everyone = fleet.view(revision)
    # at most MAX_FLEET_ROWS listed: those needing a look first (behind, stale, failing),
    # then by id; the page says how many more (the fleet keeps up to 10,000 edges, whose
    # names an edge token's holder makes up)
    def fine(edge: dict[str, Any]) -> bool:
        return bool(edge["in_sync"] and not edge["stale"] and not edge.get("last_error"))

    listed = set(map(id, sorted(everyone, key=lambda e: (fine(e), e["edge_id"]))
                     [:MAX_FLEET_ROWS]))
    edges = [e for e in everyone if id(e) in listed]
    unlisted_to_look_at = sum(not fine(e) for e in everyone if id(e) not in listed)
    for edge in edges:
        shipping = edge.get("telemetry")
        edge["last_report"] = when(edge["last_seen_ms"])
        edge["backlog"] = ({k: shipping.get(k) for k in ("buffered", "spooled_files")}
                           if isinstance(shipping, dict) else None)
    return {"current_revision": revision, "store_error": store_error, "edges": edges,
            "more": len(everyone) - len(edges), "more_to_look_at": unlisted_to_look_at,
            "max_rows": MAX_FLEET_ROWS}
