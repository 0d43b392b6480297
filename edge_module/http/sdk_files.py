"""The browser SDK's files (`GET /sdk/<file>`), read once at start-up from the SDK build's
`manifest.json` (`EDGE_SDK_DIR`) and kept in memory: they are a few kilobytes.

The manifest maps each alias (`nudge.js`) to its content-hashed file (`nudge.1a2b3c4d.js`).
A hashed name never changes its bytes, so browsers may keep it for a year; an alias is the
hashed file's bytes under a name a site can paste, kept five minutes so a new build reaches
visitors. Only the names the manifest lists are served: nothing is looked up on disk per
request, so no request path can reach another file. `manifest.json` itself is served too,
as `{"files": {alias: hashed name}, "integrity": {hashed name: "sha384-..."}}`, so a site
can pin a hashed name with subresource integrity.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
MAX_FILE_BYTES = 1024 * 1024  # the SDK aims at 8 KB; anything near this is not it
IMMUTABLE = "public, max-age=31536000, immutable"
ALIAS = "public, max-age=300"
JAVASCRIPT = "text/javascript; charset=utf-8"
JSON = "application/json"
_ALIAS_NAME = re.compile(r"[A-Za-z0-9_-]+\.m?js")
_HASHED_NAME = re.compile(r"[A-Za-z0-9_-]+\.([0-9a-f]{8})\.m?js")


class SdkManifestError(Exception):
    """A manifest the host will not serve from (the host starts without the SDK)."""


@dataclass(frozen=True)
class SdkFile:
    """One name served under /sdk/: its bytes, entity tag and caching."""

    body: bytes
    etag: str
    cache_control: str
    content_type: str = JAVASCRIPT

    def headers(self) -> list[tuple[str, str]]:
        # any page may load it, as an ES module too (module scripts are fetched with CORS)
        return [("Content-Type", self.content_type), ("Cache-Control", self.cache_control),
                ("ETag", self.etag), ("Access-Control-Allow-Origin", "*"),
                ("X-Content-Type-Options", "nosniff")]


@dataclass(frozen=True)
class SdkFiles:
    """Every name served under /sdk/ (none when the build is missing or refused, `error`
    then says why)."""

    files: dict[str, SdkFile] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> hashed name
    error: str | None = None

    @classmethod
    def load(cls, folder: Path) -> SdkFiles:
        """The files `folder/manifest.json` lists, or none and the reason."""
        try:
            return cls(*_read(folder))
        except SdkManifestError as exc:
            return cls(error=str(exc))

    def status(self) -> dict[str, Any]:
        """What /healthz says of the SDK."""
        return {"available": bool(self.files), "files": dict(self.aliases), "error": self.error}


def _read(folder: Path) -> tuple[dict[str, SdkFile], dict[str, str]]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SdkManifestError(f"no SDK build: {path} not found (./build.sh build makes "
                               "it; EDGE_SDK_DIR names its folder)") from None
    except (OSError, ValueError) as exc:
        raise SdkManifestError(f"{path}: unreadable ({exc})") from None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not listed:
        raise SdkManifestError(f"{path}: expected {{\"files\": {{alias: hashed name}}}}")
    files: dict[str, SdkFile] = {}
    aliases: dict[str, str] = {}
    integrity: dict[str, str] = {}
    for alias, hashed in listed.items():
        if not isinstance(hashed, str) or not _ALIAS_NAME.fullmatch(alias):
            raise SdkManifestError(f"{path}: {alias!r} is not an SDK file name (nudge.js)")
        named = _HASHED_NAME.fullmatch(hashed)
        if named is None:
            raise SdkManifestError(f"{path}: {hashed!r} is not a content-hashed file name "
                                   "(nudge.<8 hex>.js)")
        body = _read_file(folder / hashed)
        digest = hashlib.sha256(body).hexdigest()
        # served as immutable: bytes that do not match their name would be cached for a year
        if named.group(1) != digest[:8]:
            raise SdkManifestError(f"{folder / hashed}: its bytes hash to {digest[:8]}, "
                                   "not its name's; rebuild the SDK")
        etag = f'"{digest[:16]}"'
        files[hashed] = SdkFile(body, etag, IMMUTABLE)
        files[alias] = SdkFile(body, etag, ALIAS)
        aliases[alias] = hashed
        integrity[hashed] = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()
    listing = json.dumps({"files": aliases, "integrity": integrity}, indent=1).encode()
    files[MANIFEST] = SdkFile(listing, f'"{hashlib.sha256(listing).hexdigest()[:16]}"', ALIAS,
                              JSON)
    return files, aliases


def _read_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SdkManifestError(f"{path}: over {MAX_FILE_BYTES} bytes; not an SDK file")
        return path.read_bytes()
    except OSError as exc:
        raise SdkManifestError(f"{path}: listed in the manifest but unreadable ({exc})") from None


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, RFC 9110 13.1.2)."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
