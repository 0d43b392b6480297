"""What the demo store sells: a few products and the subscription plans on /pricing."""

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
