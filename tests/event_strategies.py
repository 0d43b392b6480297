"""Hypothesis strategies for visitor events, shared by the differential and next-check tests."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.factories import T0

URLS = ["/pricing", "/products/shoe", "/blog/post-1", "/cart", "/", "https://x.example/pricing?a=1"]
TARGETS = ["#cta", "#buy", "#logo", "#email"]

ts = st.integers(min_value=0, max_value=20_000)


def event(kind: str, **fields):
    return st.fixed_dictionaries({"type": st.just(kind), "ts_ms": ts.map(lambda t: T0 + t),
                                  **fields})


valid_events = st.one_of(
    event("page_view", url=st.sampled_from(URLS)),
    event("scroll", depth=st.floats(0, 1), y=st.integers(0, 5000)),
    event("mousemove", x=st.integers(0, 2000), y=st.integers(0, 2000)),
    event("hover", target=st.sampled_from(TARGETS), duration_ms=st.integers(0, 3000)),
    event("click", target=st.sampled_from(TARGETS)),
    event("custom", name=st.sampled_from(["cart_abandon", "add_to_cart"])),
)


def language_events(fields: list[str], pages: list[str]) -> st.SearchStrategy:
    """Events for whole rule packs: the valid ones plus small mouse moves, form work on
    `fields`, dismissals, the custom events packs listen for, and page views of `pages`."""
    return st.one_of(
        valid_events,
        event("mousemove", x=st.integers(-50, 50), y=st.integers(-50, 50)),
        event("focus", target=st.sampled_from(fields)),
        event("blur", target=st.sampled_from(fields)),
        event("input", target=st.sampled_from(fields)),
        event("submit", target=st.just("#form")),
        event("dismiss", trigger=st.just("nudge")),
        event("custom", name=st.sampled_from(["cart_abandon", "purchase", "add_to_cart"])),
        event("page_view", url=st.sampled_from(pages)),
    )
