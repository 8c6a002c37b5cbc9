"""Product and banner artwork, drawn as SVG on the fly (no image files to ship or fetch).

Each department has a simple glyph; a product's picture varies the shade and
layout by a stable hash of its id, so every product looks different but the
same product always looks the same.
"""

from __future__ import annotations

import hashlib
from html import escape

from tracker.demo.products import Category, Product

# One glyph per department, drawn in a 100x100 box.
_GLYPHS: dict[str, str] = {
    "shoes": "M10 62 Q12 44 30 46 L46 50 Q58 36 66 40 L70 58 Q88 60 90 72 L90 78 L10 78 Z",
    "outdoor": "M50 18 L86 80 L14 80 Z M50 40 L62 80 L38 80 Z",
    "kitchen": "M20 70 L70 20 Q80 14 84 22 L34 80 Z M14 76 L26 64 L36 74 L24 86 Z",
    "books": "M18 22 L48 28 L48 82 L18 76 Z M52 28 L82 22 L82 76 L52 82 Z",
    "electronics": "M22 58 Q22 20 50 20 Q78 20 78 58 L70 58 Q70 28 50 28 Q30 28 30 58 Z "
    "M16 56 L32 56 L32 80 L16 80 Z M68 56 L84 56 L84 80 L68 80 Z",
    "garden": "M50 86 L50 46 M50 60 Q20 58 22 30 Q48 30 50 56 M50 50 Q78 48 78 20 Q52 22 50 46",
}


def _shade(seed: str) -> tuple[int, int]:
    digest = hashlib.sha256(seed.encode()).digest()
    return digest[0] % 40 - 20, digest[1] % 30


def _mix(colour: str, delta: int) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    clamp = lambda v: max(0, min(255, v + delta))  # noqa: E731 - tiny local helper
    return f"#{clamp(r):02x}{clamp(g):02x}{clamp(b):02x}"


def product_svg(product: Product, category: Category) -> str:
    """A 400x300 picture of ``product``."""
    delta, tilt = _shade(product.id)
    glyph = _GLYPHS.get(product.category, _GLYPHS["books"])
    stroke = 'fill="none" stroke="#fff" stroke-width="5"' if product.category == "garden" else 'fill="#fff"'
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="400" height="300" viewBox="0 0 400 300"
 role="img" aria-label="{escape(product.name)}">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
<stop offset="0" stop-color="{_mix(category.colour, delta + 30)}"/>
<stop offset="1" stop-color="{_mix(category.colour, delta - 30)}"/></linearGradient></defs>
<rect width="400" height="300" rx="16" fill="url(#g)"/>
<g transform="translate(200 135) rotate({tilt - 15}) scale(1.9) translate(-50 -50)" opacity="0.95">
<path d="{glyph}" {stroke}/></g>
<text x="200" y="276" text-anchor="middle" font-family="system-ui,sans-serif" font-size="20"
 fill="#fff" font-weight="600">{escape(product.name)}</text>
</svg>"""


def banner_svg(title: str, categories: list[Category]) -> str:
    """A 600x200 banner background for an offer (the text is rendered by the page, not here)."""
    colours = [c.colour for c in categories] or ["#444466"]
    first, last = colours[0], colours[-1]
    glyphs = "".join(
        f'<g transform="translate({430 + 70 * i} {40 + 30 * (i % 2)}) scale(0.9)" opacity="0.35">'
        f'<path d="{_GLYPHS.get(c.id, "")}" fill="#fff"/></g>'
        for i, c in enumerate(categories[:2])
    )
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="600" height="200" viewBox="0 0 600 200"
 role="img" aria-label="{escape(title)}">
<defs><linearGradient id="b" x1="0" y1="0" x2="1" y2="0">
<stop offset="0" stop-color="{_mix(first, -20)}"/><stop offset="1" stop-color="{_mix(last, 25)}"/>
</linearGradient></defs>
<rect width="600" height="200" rx="14" fill="url(#b)"/>{glyphs}
</svg>"""
