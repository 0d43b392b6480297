"""Content variants: which of a content id's compiled variants a visitor is shown.

The most specific variant whose `when` matches the context wins (more `when` keys first,
then the longer locale, then file order); a variant for `de` matches `de-AT` and `de-CH`,
so a locale falls back from `de-AT` to `de` to the id's own fields (`default`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .catalog import (
    CONTENT_FIELDS,
    DEFAULT_VARIANT,
    MAX_LOCALE,
    MAX_VARIANTS,
    VARIANT_ARMS,
    VARIANT_WHEN,
)
from .snapshot_checks import check


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    device: str | None
    locale: tuple[str, ...]  # subtags, lower case; () matches any locale
    arm: str | None
    fields: dict[str, str]  # merged over the id's own fields by the compiler


@dataclass(frozen=True, slots=True)
class ContentEntry:
    fields: dict[str, str]
    variants: tuple[Variant, ...]  # most specific first: the first match is the choice


def locale_parts(value: Any) -> tuple[str, ...] | None:
    """A BCP 47 tag's subtags in lower case (`de-AT` -> ("de", "at")), or None when it is
    not one: a primary language of 2 or 3 letters, then subtags of 1 to 8 letters/digits."""
    if type(value) is not str or not 2 <= len(value) <= MAX_LOCALE or not value.isascii():
        return None
    parts = tuple(value.lower().replace("_", "-").split("-"))
    if not (2 <= len(parts[0]) <= 3 and parts[0].isalpha()):
        return None
    if not all(1 <= len(p) <= 8 and p.isalnum() for p in parts[1:]):
        return None
    return parts


def choose(entry: ContentEntry, device: Any, locale: tuple[str, ...], arm: str | None
           ) -> tuple[str, dict[str, str]]:
    """The variant shown for this context: its name and its fields."""
    for v in entry.variants:
        if v.device is not None and v.device != device:
            continue
        if v.arm is not None and v.arm != arm:
            continue
        if v.locale and locale[:len(v.locale)] != v.locale:
            continue
        return v.name, v.fields
    return DEFAULT_VARIANT, entry.fields


def load_content(raw: Any) -> dict[str, ContentEntry]:
    """The snapshot's `content` (docs/snapshot-format.md), checked."""
    if raw is None:
        return {}
    check(isinstance(raw, dict), "content: expected an object (content id -> fields)")
    return {str(cid): _entry(body, f"content.{cid}") for cid, body in raw.items()}


def _fields(raw: Any, where: str) -> dict[str, str]:
    check(isinstance(raw, dict) and all(k in CONTENT_FIELDS and isinstance(v, str)
                                        for k, v in raw.items()),
          f"{where}: expected an object of text fields among {', '.join(CONTENT_FIELDS)}")
    return dict(raw)


def _entry(raw: Any, where: str) -> ContentEntry:
    check(isinstance(raw, dict), f"{where}: expected an object {{fields, variants}}")
    variants = raw.get("variants") or []
    check(isinstance(variants, list) and len(variants) <= MAX_VARIANTS,
          f"{where}.variants: expected a list of at most {MAX_VARIANTS} variants")
    ranked = []
    for i, v in enumerate(variants):
        at = f"{where}.variants[{i}]"
        check(isinstance(v, dict) and isinstance(v.get("name"), str) and v["name"],
              f"{at}: expected an object with a name")
        when = v.get("when")
        check(isinstance(when, dict) and when and all(k in VARIANT_WHEN for k in when),
              f"{at}.when: expected an object of {', '.join(VARIANT_WHEN)}")
        locale = () if when.get("locale") is None else locale_parts(when["locale"])
        check(locale is not None, f"{at}.when.locale: expected a BCP 47 tag such as de-AT")
        arm = when.get("arm")
        check(arm is None or arm in VARIANT_ARMS,
              f"{at}.when.arm: expected one of {', '.join(VARIANT_ARMS)}")
        device = when.get("device")
        check(device is None or isinstance(device, str), f"{at}.when.device: expected text")
        ranked.append(((-len(when), -len(locale or ()), i),
                       Variant(v["name"], device, locale or (), arm,
                               _fields(v.get("fields"), f"{at}.fields"))))
    ranked.sort(key=lambda item: item[0])
    return ContentEntry(_fields(raw.get("fields") or {}, f"{where}.fields"),
                        tuple(v for _, v in ranked))
