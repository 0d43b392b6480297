"""The demo store (demo/store.py): its pages carry the SDK snippet pointed at the edge host,
the router's fragment endpoint, and the server started the way `./build.sh up` starts it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
import yaml
from flask.testing import FlaskClient

from demo.store import create_app
from tests.servers import ROOT, http, wait_for

EDGE = "http://edge.test:8700"
LOADER = ('(function(w,n){w[n]=w[n]||function(){(w[n].q=w[n].q||[]).push(arguments)}})'
          '(window,"nudge");')
PAGES = ["/", "/pricing", "/features", "/product/grinder", "/cart", "/checkout"]


@pytest.fixture
def client() -> Iterator[FlaskClient]:
    yield create_app(EDGE).test_client()


def page_text(client: FlaskClient, path: str) -> str:
    resp = client.get(path)
    assert resp.status_code == 200, path
    return resp.get_data(as_text=True)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_snippet_pointed_at_the_edge(client, path):
    html = page_text(client, path)
    assert LOADER in html
    assert f'nudge("init", {{edge: "{EDGE}", site: "demo-store",' in html
    assert 'hover: ["#pricing-button"]' in html
    assert f'<script async src="{EDGE}/sdk/nudge.js"></script>' in html
    assert 'id="nav"' in html and 'id="main"' in html


def catalog_in(html: str) -> dict:
    """The content catalog the page's snippet passes to init."""
    start = html.index("content: ") + len("content: ")
    return json.JSONDecoder().raw_decode(html[start:])[0]


def test_the_content_catalog_covers_every_content_id_the_rules_may_use(client):
    catalog = yaml.safe_load((ROOT / "rules" / "catalog.yaml").read_text())["content"]
    shown = catalog_in(page_text(client, "/"))
    assert set(shown) == set(catalog)
    assert {entry["render"] for entry in shown.values()} <= {"banner", "toast", "modal"}


def test_the_discount_nudge_leads_to_checkout_with_the_code(client):
    entry = catalog_in(page_text(client, "/"))["discount-nudge-10"]
    assert entry["render"] == "toast"
    assert entry["cta"]["href"] == "/checkout?code=SAVE10"


def test_consent_required_adds_the_option_and_the_consent_bar():
    html = page_text(create_app(EDGE, consent="required").test_client(), "/pricing")
    assert 'consent: "required"' in html
    assert 'id="consent-accept"' in html and 'id="consent-decline"' in html


def test_by_default_the_snippet_asks_for_no_consent(client):
    html = page_text(client, "/pricing")
    assert "consent" not in html.split("</script>")[0]
    assert 'id="consent-bar"' not in html


@pytest.mark.parametrize("path, ids", [
    ("/product/grinder", ["pricing-button", "add-to-cart", "add-to-cart-status"]),
    ("/cart", ["cart-items", "cart-total", "abandon-cart", "abandon-status", "to-checkout"]),
    ("/checkout", ["checkout-form", "checkout-name", "checkout-email", "checkout-card",
                   "checkout-code", "checkout-total", "checkout-submit", "thank-you"]),
    ("/pricing", ["plans", "plan-regular", "pricing-to-features", "pricing-end"]),
    ("/features", ["features-to-pricing"]),
])
def test_pages_keep_the_element_ids_the_browser_tests_use(client, path, ids):
    html = page_text(client, path)
    for element_id in ids:
        assert f'id="{element_id}"' in html, element_id


def test_pricing_and_features_links_are_single_page_app_links(client):
    html = page_text(client, "/pricing")
    assert re.search(r'<a id="nav-features" href="/features" data-spa>', html)
    assert re.search(r'<a id="pricing-to-features" href="/features" data-spa>', html)
    assert re.search(r'<a id="nav-cart" href="/cart">', html)  # an ordinary link


def test_the_fragment_endpoint_returns_only_the_main_content(client):
    resp = client.get("/fragment/features")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["path"] == "/features" and body["title"] == "Features"
    assert 'data-page="features"' in body["html"]
    assert "nudge(" not in body["html"] and 'id="nav"' not in body["html"]


def test_the_fragment_of_a_product_and_of_home(client):
    assert client.get("/fragment/product/kettle").get_json()["title"] == "Pour-over kettle"
    assert 'data-page="home"' in client.get("/fragment/").get_json()["html"]


@pytest.mark.parametrize("path", ["/nope", "/product/unknown", "/pricing/enterprise"])
def test_an_unknown_page_is_a_404_page_with_the_nav(client, path):
    resp = client.get(path)
    assert resp.status_code == 404
    assert 'data-page="not-found"' in resp.get_data(as_text=True)
    assert 'id="nav"' in resp.get_data(as_text=True)


def test_an_unknown_fragment_is_a_json_404(client):
    resp = client.get("/fragment/nope")
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "not_found", "path": "/nope"}


def test_the_store_script_and_stylesheet_are_served(client):
    assert client.get("/static/store.js").status_code == 200
    assert client.get("/static/store.css").status_code == 200


def test_an_edge_that_is_not_a_url_is_refused_with_a_hint():
    proc = subprocess.run([sys.executable, "-m", "demo.store", "--edge", "edge:8700"],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "http://127.0.0.1:8700" in proc.stderr


def test_the_server_starts_on_a_free_port_and_stops_on_sigterm(free_port):
    edge = "http://127.0.0.1:8799"
    proc = subprocess.Popen([sys.executable, "-m", "demo.store", "--port", str(free_port),
                             "--edge", edge], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_for(lambda: _answers(base + "/healthz"), timeout_s=30, what="the demo store")
        with urllib.request.urlopen(base + "/pricing", timeout=5) as resp:
            html = resp.read().decode()
        assert f'<script async src="{edge}/sdk/nudge.js"></script>' in html
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert f"demo store on {base}" in proc.stderr.read()


def _answers(url: str) -> bool:
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("doc", ["README.md", "docs/sdk.md"])
def test_the_documented_snippet_is_the_one_the_store_uses(doc):
    text = (ROOT / doc).read_text()
    assert LOADER in text
    assert re.search(r'<script async src="[^"]+/sdk/nudge\.js"></script>', text)


def test_the_es_module_install_on_request(client):
    html = page_text(client, "/pricing?sdk=module")
    assert f'import * as nudge from "{EDGE}/sdk/nudge.mjs";' in html
    assert "nudge.init({edge: " in html
    assert LOADER not in html and "/sdk/nudge.js" not in html
