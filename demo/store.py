"""`python -m demo.store`: the demo storefront, a site that installs the browser SDK.

Each page's main content is a file in demo/pages/; it is served inside layout.html (the nav
bar and the SDK snippet, with the edge URL filled in) or, for the single-page-app router,
alone as JSON from /fragment/<path>."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import click
from flask import Flask, Response, jsonify, render_template, request
from markupsafe import Markup
from werkzeug.exceptions import NotFound

from edge_module.channels.records import crm_signature

from .products import CONTENT, PLANS, PRODUCTS

CONSENT_MODES = ("not-required", "required")


@dataclass(frozen=True)
class Page:
    title: str
    html: Markup


def render_main(path: str) -> Page:
    """The main content of the page at `path`; NotFound for any other path."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return Page("Brewline coffee", _main("home.html", products=PRODUCTS.values()))
    if parts == ["pricing"]:
        return Page("Pricing", _main("pricing.html", plans=PLANS))
    if parts == ["features"]:
        return Page("Features", _main("features.html"))
    if parts == ["cart"]:
        return Page("Your cart", _main("cart.html"))
    if parts == ["checkout"]:
        return Page("Checkout", _main("checkout.html"))
    if len(parts) == 2 and parts[0] == "product" and parts[1] in PRODUCTS:
        product = PRODUCTS[parts[1]]
        return Page(product.name, _main("product.html", product=product))
    raise NotFound()


def _main(template: str, **context: Any) -> Markup:
    return Markup(render_template(template, **context))


def create_app(edge: str, consent: str = "not-required", crm_key: bytes | None = None) -> Flask:
    """The store's app; `edge` is the edge host's base URL the SDK snippet points at;
    `crm_key` (shared with the edge, EDGE_CRM_ID_KEY) signs a signed-in customer's id."""
    app = Flask(__name__, template_folder="pages", static_folder="static")
    app.config.update(EDGE=edge.rstrip("/"), CONSENT=consent)

    def in_layout(page: Page) -> str:
        # ?sdk=module shows the ES module install instead of the classic snippet
        sdk = "module" if request.args.get("sdk") == "module" else "classic"
        return render_template("layout.html", page=page, edge=app.config["EDGE"],
                               consent=app.config["CONSENT"], sdk=sdk, content=CONTENT,
                               crm=_customer(crm_key))

    @app.get("/")
    @app.get("/<path:path>")
    def full_page(path: str = "") -> str:
        return in_layout(render_main(path))

    @app.get("/fragment/")
    @app.get("/fragment/<path:path>")
    def fragment(path: str = "") -> tuple[Response, int]:
        try:
            page = render_main(path)
        except NotFound:
            return jsonify(error="not_found", path="/" + path), 404
        return jsonify(path="/" + path, title=page.title, html=str(page.html)), 200

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(ok=True)

    @app.errorhandler(404)
    def not_found(_err: Exception) -> tuple[str, int]:
        return in_layout(Page("Not found", _main("not_found.html"))), 404

    return app


def _customer(crm_key: bytes | None) -> dict[str, str] | None:
    """The signed-in customer (a store's session would say; here the `customer` cookie),
    with the backend's signature over the id when the store shares a key with the edge:
    push and email receivers then know the id is the store's word, not the visitor's."""
    customer = request.cookies.get("customer", "")
    if not customer or len(customer) > 64 or not customer.replace("_", "").isalnum():
        return None
    if crm_key is None:
        return {"id": customer}
    # valid for a day: long enough for any visit, short for a copied signature
    return {"id": customer, "sig": crm_signature(crm_key, customer, int(time.time()) + 86_400)}


def _check_edge(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http(s) base URL, e.g. "
                                 "http://127.0.0.1:8700")
    return value


@click.command()
@click.option("--port", type=int, default=8800, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--edge", default="http://127.0.0.1:8700", show_default=True,
              callback=_check_edge, help="The edge host's base URL (SDK and /v1/decide).")
@click.option("--consent", type=click.Choice(CONSENT_MODES), default="not-required",
              show_default=True,
              help="'required': the SDK captures nothing until the visitor accepts the bar.")
@click.option("--crm-key", envvar="EDGE_CRM_ID_KEY", default="",
              help="Hex key shared with the edge (EDGE_CRM_ID_KEY) to sign customer ids.")
def main(port: int, host: str, edge: str, consent: str, crm_key: str) -> None:
    """Serve the demo store, whose pages load the SDK from the edge host."""
    from werkzeug.serving import make_server

    # One log line per request would bury the edge host's and control plane's output in
    # `./build.sh up`; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        key = bytes.fromhex(crm_key) if crm_key else None
    except ValueError:
        raise click.BadParameter("expected hex", param_hint="--crm-key") from None
    server = make_server(host, port, create_app(edge, consent, key), threaded=True)
    click.echo(f"demo store on http://{host}:{server.server_port} (edge {edge})", err=True)

    # Started in the background by a shell, the process inherits SIGINT ignored; SIGTERM
    # (how ./build.sh up stops it) must end it as cleanly as Ctrl-C.
    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
