"""The demo shop's web server: pages, product artwork and the snippet, all on loopback.

The shop is an ordinary website from the product's point of view: it pastes
the snippet into every page, marks offer slots with ``data-offer-slot`` and
tells the snippet about product views, carts and orders. It knows nothing of
Kafka or Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tracker.demo import products as shop
from tracker.demo.images import banner_svg, product_svg
from tracker.demo.snippet import SCRIPT_PATH, snippet_tag
from tracker.demo.visitor_data import VisitorDataClient, VisitorDataUnavailable
from tracker.models.catalogue import Catalogue, load_catalogue
from tracker.settings import Settings

HERE = Path(__file__).resolve().parent
SVG = "image/svg+xml"
# The snippet's default visitor-id cookie (js-snippet/README.md, option cookieName).
SNIPPET_COOKIE = "_trk_id"


@dataclass(frozen=True)
class ShopConfig:
    """Where the shop's visitors' browsers find the product's services."""

    collector_url: str
    api_url: str
    site_id: str = "demo"
    # The consent state before the visitor has chosen (the banner asks).
    initial_consent: str = "pending"


def create_app(settings: Settings, config: ShopConfig, *, catalogue: Catalogue | None = None) -> FastAPI:
    catalogue = catalogue or load_catalogue(settings.catalogue_path)
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
    )
    tag = snippet_tag(config)
    first_product = {c.id: shop.products_in(c.id)[0] for c in shop.CATEGORIES}

    def page(name: str, status: int = 200, **context: object) -> HTMLResponse:
        html = templates.get_template(name).render(
            categories=shop.CATEGORIES, snippet_tag=tag, first_product=first_product, **context
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    app = FastAPI(title="Northwind Goods (demo shop)", docs_url=None, redoc_url=None, openapi_url=None)

    visitor_data = VisitorDataClient(config.api_url, config.site_id, settings)

    def visitor_id(request: Request) -> str | None:
        # The snippet's first-party cookie: the shop's server sees it like any site's would.
        return request.cookies.get(SNIPPET_COOKIE)

    @app.get("/me", response_class=HTMLResponse)
    async def me(request: Request) -> HTMLResponse:
        vid = visitor_id(request)
        if vid is None:
            return page("me.html", visitor_id=None)
        try:
            data = await visitor_data.profile(vid)
        except VisitorDataUnavailable as exc:
            return page("me.html", 503, visitor_id=vid, error=str(exc))
        if data is None:
            return page("me.html", visitor_id=vid, data=None)
        interests = list(data.get("interests", {}).items())
        top = max((score for _, score in interests), default=1.0) or 1.0
        profile = data.get("profile") or {}
        return page(
            "me.html",
            visitor_id=vid,
            data=data,
            interests=[(name, score, round(100 * score / top)) for name, score in interests],
            counts=sorted((profile.get("counts") or {}).items()),
            raw=orjson.dumps(profile, option=orjson.OPT_INDENT_2).decode(),
        )

    @app.post("/me/erase", response_class=HTMLResponse)
    async def erase(request: Request) -> Response:
        vid = visitor_id(request)
        if vid is None:
            return RedirectResponse("/me", status_code=303)
        try:
            request_id = await visitor_data.erase(vid)
        except VisitorDataUnavailable as exc:
            return page("me.html", 503, visitor_id=vid, error=str(exc))
        return page("erased.html", request_id=request_id)

    @app.get("/me/erase/{request_id}")
    async def erase_status(request_id: str) -> JSONResponse:
        if len(request_id) != 32 or not all(c in "0123456789abcdef" for c in request_id):
            raise HTTPException(422, "request id must be 32 hex characters")
        try:
            return JSONResponse(await visitor_data.erasure_status(request_id))
        except VisitorDataUnavailable as exc:
            return JSONResponse({"status": "unknown", "error": str(exc)}, status_code=503)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def home() -> HTMLResponse:
        return page("home.html")

    @app.get("/c/{category_id}", response_class=HTMLResponse)
    async def category(category_id: str) -> HTMLResponse:
        try:
            found = shop.category(category_id)
        except KeyError:
            return page("not_found.html", 404, message=f"There is no department called {category_id!r}.")
        return page(
            "category.html", category=found, products=shop.products_in(category_id), active=category_id
        )

    @app.get("/p/{product_id}", response_class=HTMLResponse)
    async def product(product_id: str) -> HTMLResponse:
        try:
            found = shop.product(product_id)
        except KeyError:
            return page("not_found.html", 404, message=f"There is no product {product_id!r}.")
        return page(
            "product.html", product=found, category=shop.category(found.category), active=found.category
        )

    # Offer banners link to sub-sections and promotions; the demo has one page per department.
    @app.get("/c/{category_id}/{section:path}", response_class=HTMLResponse)
    async def category_section(category_id: str, section: str) -> HTMLResponse:
        return await category(category_id)

    @app.get("/signup", response_class=HTMLResponse)
    @app.get("/bestsellers", response_class=HTMLResponse)
    @app.get("/help/{topic}", response_class=HTMLResponse)
    async def info(request: Request) -> HTMLResponse:
        # Where the default offers point: a demo needs no real sign-up, help desk or charts.
        return page(
            "info.html",
            heading="Coming soon",
            message=f"This demo shop has no {request.url.path.strip('/')} page; the offer worked, though.",
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/cart", response_class=HTMLResponse)
    async def cart() -> HTMLResponse:
        return page("cart.html")

    @app.get("/checkout/thanks", response_class=HTMLResponse)
    async def thanks() -> HTMLResponse:
        return page("checkout.html")

    # First-party copy of the built snippet, under a neutral path on the shop's own origin.
    @app.get(SCRIPT_PATH)
    async def snippet_script() -> Response:
        try:
            body = settings.snippet_path.read_bytes()
        except FileNotFoundError as exc:
            raise HTTPException(
                503, f"the snippet is not built ({settings.snippet_path} is missing)"
            ) from exc
        return Response(body, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"})

    @app.get("/img/p/{product_id}.svg")
    async def product_image(product_id: str) -> Response:
        try:
            found = shop.product(product_id)
        except KeyError as exc:
            raise HTTPException(404, f"no product {product_id!r}") from exc
        svg = product_svg(found, shop.category(found.category))
        return Response(svg, media_type=SVG, headers={"Cache-Control": "public, max-age=86400"})

    # The catalogue's offers point at /static/offers/<id>.svg on the site's own origin.
    @app.get("/static/offers/{offer_id}.svg")
    async def offer_image(offer_id: str) -> Response:
        offer = catalogue.get(offer_id)
        if offer is None:
            raise HTTPException(404, f"no offer {offer_id!r}")
        departments = [shop.category(c) for c in offer.categories if c in {d.id for d in shop.CATEGORIES}]
        return Response(banner_svg(offer.title, departments), media_type=SVG)

    # Mounted last so that the routes above (offer banners under /static/offers) win.
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> HTMLResponse:
        return page("not_found.html", 404, message="That page does not exist.")

    return app


def serve(settings: Settings, *, collector_url: str, api_url: str) -> None:
    """Run the shop with uvicorn on ``shop_host:shop_port`` until interrupted."""
    import uvicorn

    config = ShopConfig(collector_url=collector_url, api_url=api_url, site_id=settings.shop_site_id)
    uvicorn.run(
        create_app(settings, config),
        host=settings.shop_host,
        port=settings.shop_port,
        server_header=False,
        access_log=False,
        log_level="warning",
    )
