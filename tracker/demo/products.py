"""The demo shop's products: a fixed, realistic assortment across six departments.

>>> len(PRODUCTS), len(CATEGORIES)
(36, 6)
>>> product("shoes-trail-runner").category
'shoes'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    name: str
    blurb: str
    colour: str  # accent colour of the department's artwork


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    category: str
    name: str
    price: float
    description: str


CATEGORIES: tuple[Category, ...] = (
    Category("shoes", "Shoes", "Runners, boots and everyday sneakers.", "#e4572e"),
    Category("outdoor", "Outdoor", "Tents, packs and everything for a night under the stars.", "#2e8540"),
    Category("kitchen", "Kitchen", "Knives, pans and tools that make cooking a pleasure.", "#b8860b"),
    Category("books", "Books", "Novels, cookbooks and guides worth reading twice.", "#5b4b8a"),
    Category("electronics", "Electronics", "Headphones, speakers and clever gadgets.", "#1f6feb"),
    Category("garden", "Garden", "Tools, planters and seeds for greener days.", "#6a994e"),
)

_ASSORTMENT: dict[str, list[tuple[str, str, float, str]]] = {
    "shoes": [
        ("trail-runner", "Trail Runner GTX", 129.0, "Grippy, waterproof trail shoe for muddy mornings."),
        ("city-sneaker", "City Sneaker", 79.0, "Clean leather sneaker that goes with everything."),
        ("hiking-boot", "Summit Hiking Boot", 159.0, "Ankle support and a Vibram sole for long climbs."),
        ("road-racer", "Road Racer 3", 139.0, "Light, springy road shoe for race day."),
        ("slip-on", "Canvas Slip-On", 45.0, "Breezy canvas slip-on for summer days."),
        ("winter-boot", "Nordic Winter Boot", 119.0, "Warm lined boot rated to minus twenty."),
    ],
    "outdoor": [
        ("tent-2p", "Ridge 2-Person Tent", 249.0, "Freestanding three-season tent, 2.1 kg."),
        ("daypack-22", "Daypack 22 L", 69.0, "Ventilated back panel and a rain cover."),
        ("sleeping-bag", "Down Sleeping Bag -5 °C", 189.0, "Packs to the size of a loaf of bread."),
        ("camp-stove", "Compact Camp Stove", 49.0, "Boils a litre in three minutes."),
        ("headlamp", "Headlamp 400", 35.0, "400 lumens, USB-C rechargeable."),
        ("trekking-poles", "Carbon Trekking Poles", 89.0, "Folding carbon poles, 460 g the pair."),
    ],
    "kitchen": [
        ("chef-knife", "Chef's Knife 20 cm", 99.0, "Hand-forged Damascus steel, lifetime edge."),
        ("cast-iron-pan", "Cast Iron Pan 28 cm", 59.0, "Pre-seasoned, oven-safe, lasts a lifetime."),
        ("espresso-maker", "Stovetop Espresso Maker", 39.0, "Six cups of strong coffee, Italian style."),
        ("cutting-board", "Walnut Cutting Board", 65.0, "End-grain walnut, kind to your knives."),
        ("dutch-oven", "Enamel Dutch Oven", 129.0, "For slow stews and crusty bread."),
        ("spice-set", "World Spice Set", 29.0, "Twelve spices from five continents."),
    ],
    "books": [
        ("mountain-novel", "The Long Way Up", 18.0, "A gripping novel of a winter ascent."),
        ("cookbook-veg", "Green Kitchen Every Day", 32.0, "150 vegetarian weeknight recipes."),
        ("history-maps", "A History of Maps", 27.0, "How we drew the world, beautifully illustrated."),
        ("garden-guide", "The Small Garden", 24.0, "Big harvests from balconies and yards."),
        ("sci-fi-saga", "Orbit of Glass", 15.0, "First book of an award-winning space saga."),
        ("kids-atlas", "Children's Atlas of Animals", 21.0, "Where the wild things live, for ages 6+."),
    ],
    "electronics": [
        ("headphones-nc", "Noise-Cancelling Headphones", 229.0, "Thirty hours of quiet, wherever you are."),
        ("smart-speaker", "Smart Speaker Mini", 59.0, "Room-filling sound in a palm-sized speaker."),
        ("e-reader", "Paper-White E-Reader", 139.0, "A glare-free screen and weeks of battery."),
        ("action-cam", "Action Camera 4K", 199.0, "Waterproof to ten metres, stabilised video."),
        ("power-bank", "Power Bank 20 000 mAh", 45.0, "Charges a phone four times over."),
        ("smartwatch", "Fitness Smartwatch", 179.0, "GPS, heart rate and a week of battery."),
    ],
    "garden": [
        ("pruning-shears", "Bypass Pruning Shears", 34.0, "Clean cuts for stems up to 2 cm."),
        ("raised-bed", "Cedar Raised Bed", 149.0, "Untreated cedar, 120 by 60 cm."),
        ("watering-can", "Brass-Rose Watering Can", 42.0, "Nine litres, gentle shower head."),
        ("seed-kit", "Heirloom Seed Kit", 19.0, "Twelve varieties of heirloom vegetables."),
        ("garden-gloves", "Leather Garden Gloves", 22.0, "Thorn-proof goatskin gloves."),
        ("compost-bin", "Rotating Compost Bin", 119.0, "Turn scraps into compost in eight weeks."),
    ],
}

PRODUCTS: tuple[Product, ...] = tuple(
    Product(f"{category}-{slug}", category, name, price, description)
    for category, items in _ASSORTMENT.items()
    for slug, name, price, description in items
)

_BY_ID = {p.id: p for p in PRODUCTS}
_CATEGORY_BY_ID = {c.id: c for c in CATEGORIES}


def product(product_id: str) -> Product:
    """The product with this id; ``KeyError`` when there is none."""
    return _BY_ID[product_id]


def category(category_id: str) -> Category:
    return _CATEGORY_BY_ID[category_id]


def products_in(category_id: str) -> list[Product]:
    return [p for p in PRODUCTS if p.category == category_id]
