"""What the demo store sells (a few products, the subscription plans on /pricing) and the
nudges it can show: the SDK's content catalog, one entry per id in rules/catalog.yaml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    price: float
    summary: str


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    monthly: float
    features: tuple[str, ...]


PRODUCTS: dict[str, Product] = {p.id: p for p in (
    Product("grinder", "Conical burr grinder", 129.0,
            "Forty grind settings, from espresso fine to cold-brew coarse."),
    Product("kettle", "Pour-over kettle", 59.0,
            "A gooseneck spout and a thermometer in the lid, for a steady pour."),
    Product("beans", "House blend, 1 kg", 24.0,
            "Chocolate and hazelnut, roasted on Monday, at your door on Wednesday."),
)}

PLANS: tuple[Plan, ...] = (
    Plan("taster", "Taster", 12.0, ("250 g every month", "Rotating single origins",
                                   "Pause any time")),
    Plan("regular", "Regular", 24.0, ("1 kg every month", "Choose your roast",
                                     "Free shipping", "10 % off equipment")),
    Plan("office", "Office", 79.0, ("4 kg every month", "Two deliveries a month",
                                   "Free shipping", "A grinder on loan", "Priority support")),
)


def _nudge(render: str, title: str, body: str, cta: str, href: str) -> dict[str, object]:
    return {"render": render, "title": title, "body": body, "cta": {"text": cta, "href": href}}


CONTENT: dict[str, dict[str, object]] = {
    "discount-nudge-10": _nudge("toast", "10 % off your first order",
                                "Still deciding? Take 10 % off any plan today.",
                                "Use code SAVE10", "/checkout?code=SAVE10"),
    "cart-reminder": _nudge("banner", "Your cart is waiting",
                            "The items you picked are saved for you.", "Go to checkout",
                            "/checkout"),
    "newsletter-signup": _nudge("modal", "Fresh roasts, once a month",
                                "One email a month: new beans, brewing tips, no spam.",
                                "Sign me up", "/?newsletter=1"),
    "free-shipping-banner": _nudge("banner", "Free shipping over 50 EUR",
                                   "On every order, every day.", "Shop now", "/"),
    "help-chat-offer": _nudge("toast", "Questions about a grinder?",
                              "Our baristas answer in minutes.", "Chat with us",
                              "/features#support"),
}
