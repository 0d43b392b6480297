"""Someone who can write to the edge store but holds no key forges `manifest.json`: the
control plane must never show, number from, copy or sign what it did not sign
(`control_plane/distribution/manifest_trust.py`).

An independent review found that it did: the forged entry was the current one in the API,
the next publish continued its numbers and kept its history, and a rollback to a forged
history entry, or the recalibration of a forged current one, signed the forger's snapshot
with the key every edge trusts."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.cli import cli
from control_plane.distribution import publishing
from control_plane.distribution.keys import KeyRing, SigningKey
from control_plane.distribution.manifest_trust import (
    LEDGER_FILE,
    MAX_HISTORY,
    MAX_REASONS,
    Ledger,
    ManifestKeys,
    VouchedStore,
)
from control_plane.rulepack import load_pack
from edge_module.distribution.edge_store import (
    LocalFolderStore,
    object_key,
    read_manifest,
    sha256_text,
)
from edge_module.distribution.signing import entry_statement, key_id
from tests.servers import PUBLISHER_TOKEN, control_client, control_config, served

PACK = ("pack: p\ntriggers:\n  - id: t\n    when: [{dwell: \">= 1s\"}]\n"
        "    action: {content: %s}\n")
EVIL = "evil-content"


def pack(content: str) -> list:
    return [load_pack(PACK % content, "p.yaml")]


def forger_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(key_id(private.public_key()), private)


@pytest.fixture
def plane(tmp_path: Path) -> tuple[dict[str, Any], VouchedStore, SigningKey]:
    """A control plane's settings, its store as it reads it, its key; revisions 1-3."""
    config = control_config(tmp_path)
    ring = KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"])
    store = VouchedStore(LocalFolderStore(Path(config["STORE_DIR"])),
                         ManifestKeys.of_ring(ring.keys_dir, ring.trusted_dir),
                         Ledger(Path(config["DATA_DIR"]) / LEDGER_FILE))  # the app's
    key = ring.active()
    for n in (1, 2, 3):
        publishing.publish(store, pack(f"good-{n}"), key, now_ms=n * 1000)
    return config, store, key


def forged_entry(store: VouchedStore, revision: int, sequence: int,
                 signer: SigningKey | None) -> dict[str, Any]:
    """An object of the forger's and an entry naming it (signed by `signer`, or not)."""
    good = json.loads(served(store.store).snapshot_text)
    text = json.dumps({**good, "revision": str(revision),
                       "triggers": [{**good["triggers"][0],
                                     "action": {**good["triggers"][0]["action"],
                                                "content": EVIL}}]})
    sha = sha256_text(text)
    store.store.put_object(object_key(sha), text.encode())
    entry: dict[str, Any] = {"revision": revision, "sha256": sha, "object": object_key(sha),
                             "published_ms": 5000, "triggers": 1, "packs": ["p"],
                             "sequence": sequence}
    if signer is not None:
        entry.update(signature=signer.sign(text.encode()), key_id=signer.id,
                     entry_signature=signer.sign(entry_statement(entry)),
                     entry_key_id=signer.id)
    return entry


def write(store: VouchedStore, change) -> dict[str, Any]:
    manifest, etag = read_manifest(store.store)
    doc = change(manifest.doc)
    store.store.put_manifest(json.dumps(doc).encode(), etag)
    return doc


def forge_current(store: VouchedStore, signer: SigningKey | None,
                  sequence: int = 2**62) -> dict[str, Any]:
    """manifest.json names the forger's object, with a huge sequence and revision 90."""
    entry = forged_entry(store, 90, sequence, signer)
    return write(store, lambda doc: {**doc, **entry, "history": [*doc["history"], entry]})


@pytest.mark.parametrize("signer", [None, "forger"], ids=["unsigned", "foreign key"])
def test_a_forged_current_entry_is_not_shown_numbered_from_or_kept(plane, signer):
    _, store, key = plane
    forge_current(store, forger_key() if signer else None)

    current = publishing.current(store)
    assert current["revision"] == 3
    reasons = " ".join(current["untrusted"])
    assert "current revision 90" in reasons and "history revision 90" in reasons
    assert ("not signed" if signer is None else "does not hold") in reasons
    assert publishing.current_entry(store).revision == 3
    assert [r["revision"] for r in publishing.revisions(store)] == [3, 2, 1]

    published = publishing.publish(store, pack("good-4"), key, now_ms=6000)
    assert published.revision == 4  # not 91: the forged number is not continued
    assert published.sequence == 6000  # not 2**62 + 1: its sequence is not either
    doc = read_manifest(store.store)[0].doc
    assert [h["revision"] for h in doc["history"]] == [1, 2, 3, 4]  # the forgery dropped
    assert "untrusted" not in publishing.current(store)


def test_the_api_and_the_cli_show_the_signed_current_entry_and_say_what_was_set_aside(
        plane, tmp_path):
    config, store, _ = plane
    forge_current(store, forger_key())
    client = control_client(tmp_path)
    body = client.get("/v1/snapshots/current").get_json()
    assert body["revision"] == 3 and any("current revision 90" in r for r in body["untrusted"])
    fleet = client.get("/v1/fleet").get_json()
    assert fleet["current_revision"] == 3 and fleet["untrusted"]
    listed = client.get("/v1/snapshots").get_json()["revisions"]
    assert [r["revision"] for r in listed] == [3, 2, 1]
    shown = CliRunner().invoke(cli, ["status", "--store", config["STORE_DIR"]],
                               env={"CONTROL_DATA_DIR": config["DATA_DIR"]})
    assert shown.exit_code == 0, shown.output
    assert "published: revision 3" in shown.output and "set aside" in shown.output


def test_a_rollback_to_a_forged_history_entry_is_refused_and_signs_nothing(plane):
    _, store, key = plane
    entry = forged_entry(store, 2, 2**62, forger_key())  # claims to be revision 2
    entry.pop("sequence")
    write(store, lambda doc: {**doc, "history": [entry, *doc["history"]]})
    publishing.rollback(store, 2, key, now_ms=7000)
    now = served(store.store)
    assert now.manifest["revision"] == 2 and "good-2" in now.snapshot_text
    assert EVIL not in now.snapshot_text

    write(store, lambda doc: {**doc, "history": [forged_entry(store, 77, 9, None),
                                                 *doc["history"]]})
    with pytest.raises(publishing.RevisionError) as refused:
        publishing.rollback(store, 77, key, now_ms=8000)
    assert refused.value.code == "unknown_revision"
    assert EVIL not in served(store.store).snapshot_text


def test_an_altered_signed_field_sets_the_entry_aside(plane):
    """A genuine entry whose revision is changed no longer matches its signature; the
    ledger still holds the entry as it was written."""
    _, store, _ = plane

    def alter(doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "revision": 9,
                "history": [*doc["history"][:-1], {**doc["history"][-1], "revision": 9}]}

    write(store, alter)
    current = publishing.current(store)
    assert current["revision"] == 3  # the ledger's copy
    assert any("bad entry signature" in r for r in current["untrusted"])
    without_ledger = VouchedStore(store.store, store.manifest_keys)
    assert publishing.current(without_ledger)["revision"] == 2  # the store's alone


def test_an_entry_naming_an_object_other_than_its_hash_is_set_aside(plane):
    _, store, _ = plane
    write(store, lambda doc: {**doc, "history": [*doc["history"][:-1], {
        **doc["history"][-1], "object": doc["history"][0]["object"]}]})
    reasons = publishing.current(store)["untrusted"]
    assert any("history revision 3" in r and "content address" in r for r in reasons)


def test_the_served_snapshot_recalibration_starts_from_is_never_the_forgers(plane):
    _, store, _ = plane
    forge_current(store, None)
    entry, snapshot = publishing.served(store)
    assert entry.revision == 3 and EVIL not in json.dumps(snapshot)
    assert EVIL not in json.dumps(publishing.published_snapshot(store))


def test_a_store_with_nothing_this_control_plane_signed_reads_as_unpublished(tmp_path):
    config = control_config(tmp_path)
    ring = KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"])
    other = KeyRing(tmp_path / "other" / "keys", tmp_path / "other" / "trusted").ensure()
    raw = LocalFolderStore(Path(config["STORE_DIR"]))
    publishing.publish(VouchedStore(raw, ManifestKeys(tmp_path / "other" / "trusted")),
                       pack("theirs"), other, now_ms=1000)
    mine = VouchedStore(raw, ManifestKeys.of_ring(ring.keys_dir, ring.trusted_dir))
    assert publishing.current(mine) is None
    assert publishing.publish(mine, pack("mine"), ring.active(), now_ms=2000).revision == 1


def test_retired_keys_stay_recognised_and_keys_it_no_longer_holds_do_not(tmp_path):
    ring = KeyRing(tmp_path / "keys", tmp_path / "trusted")
    old = ring.ensure()
    keys = ManifestKeys.of_ring(ring.keys_dir, ring.trusted_dir)
    entry = {"revision": 1, "sha256": "a" * 64, "object": object_key("a" * 64),
             "published_ms": 1, "sequence": 1}
    signed = {**entry, "entry_signature": old.sign(entry_statement(entry)),
              "entry_key_id": old.id}
    ring.rotate()
    ring.retire(old.id)
    assert not (ring.trusted_dir / f"{old.id}.pub").exists()  # edges stop trusting it
    assert keys.refusal(signed, ledgered=True) is None  # an entry it recorded: still its own
    assert "retired since" in (keys.refusal(signed, ledgered=False) or "")  # anything else
    (ring.keys_dir / "retired" / f"{old.id}.pub").unlink()
    assert "does not hold" in (keys.refusal(signed) or "")
    bad = {**signed, "entry_signature": base64.b64encode(b"x" * 64).decode()}
    (ring.keys_dir / "retired").rmdir()
    assert keys.refusal(bad) is not None


def test_the_console_warns_that_someone_else_wrote_to_the_store(plane, tmp_path):
    _, store, _ = plane
    forge_current(store, forger_key())
    browser = control_client(tmp_path, token=None).application.test_client()
    sign_in = browser.get("/sign-in").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', sign_in)
    assert csrf
    assert browser.post("/sign-in", data={"token": PUBLISHER_TOKEN, "name": "Ann",
                                          "next": "/packs", "csrf": csrf.group(1)}
                        ).status_code == 302
    page = html.unescape(browser.get("/packs").get_data(as_text=True))
    assert "revision 3</strong>" in page and 'id="untrusted"' in page
    assert "current revision 90" in page and "does not hold" in page



def test_a_replayed_manifest_with_its_history_cut_is_not_believed(plane):
    """A second review: revision 1 (withdrawn) put back as the whole manifest; the
    recalibration re-tuned it and signed it anew as revision 2, and edges served it."""
    _, store, key = plane
    first = read_manifest(store.store)[0].doc["history"][0]
    write(store, lambda doc: {"format": doc["format"], **first, "history": [first]})
    current = publishing.current(store)
    assert current["revision"] == 3
    assert any("current revision 1 " in r and "replayed or cut" in r
               for r in current["untrusted"])
    entry, snapshot = publishing.served(store)
    assert entry.revision == 3 and "good-3" in json.dumps(snapshot)
    published = publishing.publish(store, pack("good-4"), key, now_ms=9000)
    assert published.revision == 4  # never a number already used
    doc = read_manifest(store.store)[0].doc
    assert [h["revision"] for h in doc["history"]] == [1, 2, 3, 4]  # history restored


def test_an_entry_signed_with_a_leaked_retired_key_is_not_believed(tmp_path):
    """A retired key recognises the entries this control plane recorded, nothing new."""
    config = control_config(tmp_path)
    ring = KeyRing(config["KEYS_DIR"], config["TRUSTED_KEYS"])
    store = VouchedStore(LocalFolderStore(Path(config["STORE_DIR"])),
                         ManifestKeys.of_ring(ring.keys_dir, ring.trusted_dir),
                         Ledger(Path(config["DATA_DIR"]) / LEDGER_FILE))
    old = ring.active()
    publishing.publish(store, pack("good-1"), old, now_ms=1000)
    new = ring.rotate()
    publishing.publish(store, pack("good-2"), new, now_ms=2000)
    ring.retire(old.id)
    leaked = forged_entry(store, 2, 1500, old)  # the attacker kept a copy of the old key
    write(store, lambda doc: {**doc, "history": [leaked, *doc["history"]]})
    reasons = publishing.set_aside(store)
    assert any("retired since" in r for r in reasons)
    done = publishing.rollback(store, 1, ring.active(), now_ms=3000)  # recorded: rolls back
    assert done.changed and "good-1" in served(store.store).snapshot_text
    publishing.rollback(store, 2, ring.active(), now_ms=4000)
    assert "good-2" in served(store.store).snapshot_text
    assert EVIL not in served(store.store).snapshot_text


@pytest.mark.parametrize("label,value", [("triggers", "x"), ("recalibrated_from", "x"),
                                         ("packs", 5), ("packs", ["p", "ghost"]),
                                         ("pack_sha256", [1])])
def test_unsigned_labels_altered_in_the_store_are_read_as_written(plane, label, value):
    """A review: `triggers: "x"` made recalibrate exit 70 and a rollback answer 500, and
    `packs: [..., "ghost"]` made publish refuse; the ledger keeps the labels as written."""
    _, store, key = plane
    write(store, lambda doc: {**doc, label: value, "history": [
        {**e, label: value} for e in doc["history"]]})
    current = publishing.current(store)
    assert (current["triggers"], current["packs"]) == (1, ["p"])
    assert publishing.current_entry(store, fresh=True).packs == ("p",)
    assert publishing.rollback(store, 1, key, now_ms=9000).changed
    doc = read_manifest(store.store)[0].doc
    assert all(e["packs"] == ["p"] and e["triggers"] == 1 for e in doc["history"])


def test_without_a_ledger_malformed_labels_are_read_from_the_object(plane):
    _, store, _ = plane
    write(store, lambda doc: {**doc, "triggers": "x", "recalibrated_from": "y",
                              "history": [*doc["history"][:-1], {
                                  **doc["history"][-1], "triggers": "x", "packs": 5,
                                  "recalibrated_from": "y"}]})
    bare = VouchedStore(store.store, store.manifest_keys)
    current = publishing.current(bare)
    assert (current["revision"], current["triggers"], current["packs"]) == (3, 1, ["p"])
    assert "recalibrated_from" not in current


@pytest.mark.parametrize("data", [b"{" * 100_000, b"not json", b'{"format": "x"}'])
def test_an_unreadable_manifest_is_set_aside_whole_and_the_next_publish_repairs_it(
        plane, data):
    _, store, key = plane
    etag = read_manifest(store.store)[1]
    store.store.put_manifest(data, etag)
    assert publishing.current(store)["revision"] == 3  # from the ledger
    assert "set aside whole" in publishing.set_aside(store)[0]
    assert publishing.publish(store, pack("good-4"), key, now_ms=9000).revision == 4
    assert [h["revision"] for h in read_manifest(store.store)[0].doc["history"]] == \
        [1, 2, 3, 4]


def test_a_flood_of_forged_entries_is_bounded(plane):
    """A review: 200,000 forged entries naming the real key id took 4.6 s a read on every
    anonymous request and answered 25 MB of reasons."""
    _, store, key = plane
    fake = {"revision": 5, "sha256": "a" * 64, "object": object_key("a" * 64),
            "published_ms": 1, "triggers": 1, "packs": ["p"], "entry_key_id": key.id,
            "entry_signature": base64.b64encode(b"x" * 64).decode()}
    write(store, lambda doc: {**doc, "history": [
        *doc["history"], *({**fake, "sequence": 10**6 + n} for n in range(500))]})
    reasons = publishing.set_aside(store)
    assert len(reasons) == MAX_REASONS + 1 and reasons[-1] == "and 480 more"
    assert publishing.current(store)["revision"] == 3
    write(store, lambda doc: {**doc, "history": [doc["history"][0]] * (MAX_HISTORY + 1)})
    assert "set aside whole" in publishing.set_aside(store)[0]
    assert publishing.current(store)["revision"] == 3


def test_a_key_id_with_a_line_break_cannot_forge_log_lines(plane, caplog):
    _, store, _ = plane
    entry = forged_entry(store, 90, 2**62, forger_key())
    entry["entry_key_id"] = "abc\n2026-12-08 INFO control_plane: all good"
    write(store, lambda doc: {**doc, **entry})
    publishing.current(store)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "set aside" in logged and "\n2026-12-08 INFO" not in logged


def test_metrics_show_the_believed_revision_and_what_was_set_aside(plane, tmp_path):
    _, store, _ = plane
    forge_current(store, None)
    app = control_client(tmp_path).application
    from control_plane.metrics import PublishedCollector

    samples = {m.name: m.samples[0].value for m in
               PublishedCollector(app.extensions["edge_store"]).collect() if m.samples}
    assert samples["control_published_revision"] == 3
    assert samples["control_manifest_untrusted"] == 2
