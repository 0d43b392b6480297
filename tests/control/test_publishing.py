"""Publishing and rolling back revisions in the edge store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control_plane.distribution import publishing
from control_plane.distribution.keys import KeyRing, SigningKey
from control_plane.rulepack import load_pack
from edge_module.core import load_snapshot
from edge_module.distribution.edge_store import (
    LocalFolderStore,
    ManifestConflict,
    StoreError,
    read_manifest,
)
from edge_module.distribution.signing import SignatureError, TrustedKeys, entry_statement
from tests.servers import TEST_KEY as SIGNER
from tests.servers import TRUSTED_KEYS, vouched
from tests.servers import served as served_now

PACK = "pack: p\ntriggers:\n  - id: t\n    when: [{dwell: \">= {secs}s\"}]\n" \
       "    action: {content: c}\n"


def pack(secs: int) -> list:
    return [load_pack(PACK.replace("{secs}", str(secs)), "p.yaml")]


@pytest.fixture
def signer(tmp_path: Path) -> SigningKey:
    return KeyRing(tmp_path / "keys", tmp_path / "trusted").ensure()


@pytest.fixture
def store(tmp_path: Path, signer: SigningKey) -> LocalFolderStore:
    store = vouched(tmp_path / "store", tmp_path / "trusted")
    for n, secs in enumerate((1, 2, 3), start=1):
        publishing.publish(store, pack(secs), signer, now_ms=n * 1000)
    return store


def served(store: LocalFolderStore) -> tuple[str, float]:
    """The revision label and dwell threshold of the snapshot the edge would fetch now."""
    fetched = served_now(store)
    snap = json.loads(fetched.snapshot_text)
    return load_snapshot(fetched.snapshot_text).revision, snap["triggers"][0]["when"][0]["value"]


def test_rollback_points_the_edge_at_the_earlier_revisions_snapshot(store):
    publishing.rollback(store, 1, SIGNER, now_ms=9000)
    assert served(store) == ("1", 1000)


def test_rollback_makes_the_manifest_name_the_earlier_revision(store):
    done = publishing.rollback(store, 2, SIGNER, now_ms=9000)
    current = publishing.current(store)
    assert current is not None
    assert (current["revision"], current["rollback_from"]) == (2, 3)
    assert (done.entry.to_dict(), done.changed) == (current, True)


def test_rollback_is_recorded_in_the_history_as_a_rollback(store):
    publishing.rollback(store, 1, SIGNER, now_ms=9000)
    newest = publishing.revisions(store)[0]
    assert (newest["revision"], newest["rollback_from"], newest["published_ms"]) == (1, 3, 9000)
    assert [r["revision"] for r in publishing.revisions(store)] == [1, 3, 2, 1]


def test_publishing_after_a_rollback_takes_a_new_number(store, signer):
    publishing.rollback(store, 1, SIGNER, now_ms=9000)
    assert publishing.publish(store, pack(4), signer, now_ms=10_000).revision == 4


def test_rolling_back_to_a_rolled_back_revision_uses_its_original_snapshot(store):
    publishing.rollback(store, 1, SIGNER, now_ms=9000)
    publishing.rollback(store, 3, SIGNER, now_ms=9500)
    assert served(store) == ("3", 3000)


def test_rolling_back_to_the_current_revision_changes_nothing(store):
    before = publishing.revisions(store)
    assert not publishing.rollback(store, 3, SIGNER, now_ms=9000).changed
    assert publishing.revisions(store) == before


def test_an_unknown_revision_is_refused_and_names_the_known_ones(store):
    with pytest.raises(publishing.RevisionError) as info:
        publishing.rollback(store, 7, SIGNER)
    assert info.value.code == "unknown_revision"
    assert info.value.message == "revision 7 was never published (published: 1, 2, 3)"
    assert served(store) == ("3", 3000)


def test_rollback_before_anything_is_published_is_refused(tmp_path):
    with pytest.raises(publishing.RevisionError) as info:
        publishing.rollback(vouched(tmp_path), 1, SIGNER)
    assert info.value.code == "not_published"


def test_rollback_keeps_what_the_publish_recorded_about_the_revision(store):
    got = read_manifest(store)
    assert got is not None
    manifest, etag = got[0].doc, got[1]
    manifest["history"][0]["note"] = "kept"  # e.g. a field a later publish adds
    store.put_manifest(json.dumps(manifest).encode(), etag)
    publishing.rollback(store, 1, SIGNER, now_ms=9000)
    assert served_now(store).manifest["note"] == "kept"
    assert served_now(store).manifest["object"] == manifest["history"][0]["object"]


def test_a_revision_signed_by_a_key_retired_since_rolls_back_signed_by_the_active_one(
        tmp_path):
    """operations.md: rotate, publish, retire the old key once edges moved on. A rollback
    to a revision of the old key then answered 200 and every edge refused it: the
    snapshot kept the signature of a key they no longer trust."""
    ring = KeyRing(tmp_path / "keys", tmp_path / "trusted")
    old_key = ring.ensure()
    store = vouched(tmp_path / "store", tmp_path / "trusted", tmp_path / "keys" / "retired")
    publishing.publish(store, pack(1), old_key, now_ms=1000)
    new_key = ring.rotate()
    publishing.publish(store, pack(2), new_key, now_ms=2000)
    ring.retire(old_key.id)
    publishing.rollback(store, 1, ring.active(), now_ms=3000)
    manifest = served_now(store).manifest
    assert (manifest["revision"], manifest["key_id"]) == (1, new_key.id)
    trusted = TrustedKeys(tmp_path / "trusted")
    trusted.verify(served_now(store).snapshot_text.encode(), manifest["signature"],
                   manifest["key_id"], what="snapshot")  # what an edge checks
    with pytest.raises(SignatureError):  # and the old signature would not pass
        trusted.verify(served_now(store).snapshot_text.encode(),
                       manifest["history"][-1]["signature"], old_key.id, what="snapshot")


def test_the_snapshot_of_any_published_revision_can_be_read(store):
    assert publishing.published_snapshot(store, 2)["revision"] == "2"
    assert publishing.published_snapshot(store)["revision"] == "3"


# -- signed manifest entries ---------------------------------------------------------------

def verify_entry(entry: dict, trusted_dir: Path) -> None:
    TrustedKeys(trusted_dir).verify(entry_statement(entry), entry["entry_signature"],
                                    entry["entry_key_id"], what="manifest entry")


def test_every_entry_is_signed_with_a_rising_sequence(store, tmp_path):
    history = list(reversed(publishing.revisions(store)))
    sequences = [e["sequence"] for e in history]
    assert sequences == sorted(set(sequences))
    for entry in history:
        verify_entry(entry, tmp_path / "trusted")


def test_a_rollback_is_a_newly_signed_statement_above_every_entry(store, tmp_path):
    before = publishing.current(store)
    done = publishing.rollback(store, 1, SIGNER, now_ms=9000).entry.to_dict()
    assert done["rollback_from"] == 3 and done["sequence"] > before["sequence"]
    verify_entry(done, TRUSTED_KEYS)
    with pytest.raises(SignatureError):  # the statement covers the rollback flag
        verify_entry({**done, "rollback_from": None}, TRUSTED_KEYS)


def test_a_store_started_afresh_continues_above_the_old_sequence(tmp_path, signer):
    old = publishing.publish(vouched(tmp_path / "old", tmp_path / "trusted"), pack(1), signer)
    fresh = publishing.publish(vouched(tmp_path / "fresh", tmp_path / "trusted"), pack(2),
                               signer)
    assert fresh.sequence is not None and old.sequence is not None
    assert fresh.sequence >= old.sequence  # the time in ms, unless numbers are above it


def test_a_recalibrated_copy_of_a_superseded_revision_is_not_published(store, signer):
    got = publishing.served(store)
    assert got is not None
    entry, snapshot = got
    publishing.publish(store, pack(9), signer, now_ms=10_000)  # someone publishes meanwhile
    with pytest.raises(publishing.RevisionError) as info:
        publishing.publish_snapshot(store, snapshot, entry, signer, now_ms=11_000)
    assert info.value.code == "superseded"
    assert served(store) == ("4", 9000)


def test_a_recalibrated_copy_keeps_the_packs_it_was_compiled_from(store, signer):
    entry, snapshot = publishing.served(store)
    models = {**snapshot.get("models", {}), "thresholds": {"k": {"*": 0.5}}}
    done = publishing.publish_snapshot(store, {**snapshot, "models": models}, entry, signer,
                                       now_ms=10_000)
    again = publishing.published_snapshot(store)
    assert (done.revision, done.recalibrated_from, done.pack_sha256) == \
        (4, 3, entry.pack_sha256)
    assert again["packs"] == snapshot["packs"] and again["models"]["thresholds"]


def test_a_write_through_the_control_planes_shared_reads_is_decided_on_the_store_itself(
        tmp_path, signer):
    """The control plane shares manifest reads for a second (`ManifestCache`); a review's
    rollback, decided on a shared read older than another publish, answered 'already
    served' and changed nothing while the store served the newer revision."""
    from control_plane.distribution.manifest_cache import ManifestCache

    raw = vouched(tmp_path / "shared", tmp_path / "trusted")
    shared = ManifestCache(raw, fresh_s=600)
    publishing.publish(shared, pack(1), signer, now_ms=1000)
    publishing.publish(shared, pack(2), signer, now_ms=2000)
    assert publishing.current(shared)["revision"] == 2  # this process sees its own write
    publishing.publish(raw, pack(3), signer, now_ms=3000)  # another process publishes
    assert publishing.current(shared)["revision"] == 2  # shared reads lag (documented)
    done = publishing.rollback(shared, 2, signer, now_ms=4000)
    assert done.changed and read_manifest(raw)[0].doc["revision"] == 2
    assert publishing.current(shared)["revision"] == 2 and served(raw)[1] == 2000
    published = publishing.publish(shared, pack(4), signer, now_ms=5000)
    assert published.revision == 4 == read_manifest(raw)[0].doc["revision"]


class _AnswerLost:
    """A store whose manifest write lands but whose answer is lost: botocore retries the
    conditional PUT, which then meets its own write (412), or the call times out."""

    def __init__(self, store: LocalFolderStore, error: Exception) -> None:
        self.store, self.error, self.lose = store, error, False

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def put_manifest(self, data: bytes, if_match):
        etag = self.store.put_manifest(data, if_match)
        if self.lose:
            raise self.error
        return etag


@pytest.mark.parametrize("error", [ManifestConflict("412 on the retry"),
                                   StoreError("read timeout")])
def test_a_write_whose_answer_is_lost_is_judged_by_what_the_store_serves(tmp_path, signer,
                                                                         error):
    """A third review saw one publish make two revisions (the retried PUT's 412 taken for
    another publisher), and a rollback that took effect answer 'nothing was changed'."""
    store = _AnswerLost(vouched(tmp_path / "store", tmp_path / "trusted"), error)
    for secs in (1, 2, 3):
        publishing.publish(store, pack(secs), signer)
    store.lose = True
    published = publishing.publish(store, pack(4), signer)
    doc = read_manifest(store.store)[0].doc
    assert published.revision == 4 == doc["revision"] and len(doc["history"]) == 4
    done = publishing.rollback(store, 2, signer)
    assert done.changed and read_manifest(store.store)[0].doc["revision"] == 2


def test_a_write_whose_answer_is_lost_and_then_superseded_is_still_written(tmp_path, signer):
    """Judged by whether it is current, a publish that landed and was then overtaken by
    another publish was compiled again and published over it."""
    raw = vouched(tmp_path / "store", tmp_path / "trusted")
    publishing.publish(raw, pack(1), signer)

    class Overtaken(_AnswerLost):
        def put_manifest(self, data: bytes, if_match):
            self.store.put_manifest(data, if_match)
            publishing.publish(self.store, pack(50), signer)  # another publisher, meanwhile
            raise self.error

    store = Overtaken(raw, ManifestConflict("412 on the retry"))
    published = publishing.publish(store, pack(4), signer)
    doc = read_manifest(raw)[0].doc
    assert published.revision == 2 and doc["revision"] == 3 and len(doc["history"]) == 3
    assert served(raw)[1] == 50_000  # the other publisher's stays served
