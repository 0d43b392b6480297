"""Publish-to-served propagation: how long after a publish every edge serves it.

Two edge hosts (real component, 1 s manifest poll, signature and hash checks) follow a
local edge store; ten revisions are published at irregular moments, and for each host the
time from `publish()` returning to the host's pool serving the new revision is recorded.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from control_plane.distribution import publishing
from control_plane.distribution.keys import KeyRing
from control_plane.distribution.manifest_trust import ManifestKeys, VouchedStore
from control_plane.rulepack import load_pack
from edge_module.host.config import EdgeConfig
from edge_module.host.edge_host import EdgeHost

PACK = """
pack: greet
triggers:
  - id: greet
    on: page_view
    when: [{{dwell: ">= {n}ms"}}]
    action: {{content: greeting}}
"""


def measure(revisions: int, poll_s: float, build: Path) -> dict[str, list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="propagation-"))
    ring = KeyRing(tmp / "keys", tmp / "trusted")
    signer = ring.ensure()
    store_dir = tmp / "store"
    from edge_module.distribution.edge_store import LocalFolderStore

    store = VouchedStore(LocalFolderStore(store_dir),
                         ManifestKeys.of_ring(ring.keys_dir, ring.trusted_dir))
    publishing.publish(store, [load_pack(PACK.format(n=0), "greet.yaml")], signer)
    hosts = {}
    for name in ("edge-a", "edge-b"):
        config = EdgeConfig.from_env({}, store=str(store_dir), trusted_keys=ring.trusted_dir,
                                     component=build / "decision-engine.wasm",
                                     cache_dir=build / "cache", sync_interval_s=poll_s,
                                     threads=2, control_url="", state_dir=tmp / name)
        hosts[name] = EdgeHost.build(config)
    delays: dict[str, list[float]] = {name: [] for name in hosts}
    rng = random.Random(7)
    try:
        for n in range(1, revisions + 1):
            time.sleep(rng.uniform(0.2, 1.2))  # publish at a random phase of the polls
            published = publishing.publish(
                store, [load_pack(PACK.format(n=n), "greet.yaml")], signer)
            done = time.monotonic()
            target = str(published.revision)
            waiting = set(hosts)
            while waiting:
                for name in list(waiting):
                    current = hosts[name].app.pool.current
                    if current is not None and current.revision == target:
                        delays[name].append((time.monotonic() - done) * 1000)
                        waiting.discard(name)
                time.sleep(0.002)
    finally:
        for host in hosts.values():
            host.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--revisions", type=int, default=10)
    parser.add_argument("--poll", type=float, default=1.0, help="manifest poll interval, s")
    parser.add_argument("--build", type=Path, default=Path("build"))
    args = parser.parse_args()
    delays = measure(args.revisions, args.poll, args.build)
    print(f"publish-to-served propagation, {args.revisions} revisions, 2 hosts, "
          f"{args.poll:g} s poll (local folder store, signature + hash verified)")
    every = [d for values in delays.values() for d in values]
    for name, values in [*delays.items(), ("both", every)]:
        print(f"  {name:<8} p50 {statistics.median(values):7.1f} ms   max {max(values):7.1f} ms")


if __name__ == "__main__":
    main()
