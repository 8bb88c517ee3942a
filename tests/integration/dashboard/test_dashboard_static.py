"""The page and its assets are served by the query API, with a strict CSP."""

from __future__ import annotations

import httpx


def test_index_is_served_at_root_with_security_headers(site):
    r = httpx.get(site.url, timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # relative asset URLs: the page also works behind a proxy under a path prefix
    assert 'src="static/dashboard.js"' in r.text and 'src="/static' not in r.text
    assert "<script>" not in r.text  # no inline script, so the CSP holds


def test_assets_and_vendored_licence_are_served(site):
    modules = [f"static/{m}.js" for m in ("dashboard", "api", "charts", "dom", "format", "panels",
                                                  "pipeline")]
    for path, kind in (*((m, "javascript") for m in modules), ("static/dashboard.css", "css"),
                       ("static/vendor/uPlot.iife.min.js", "javascript"),
                       ("static/vendor/uPlot.LICENSE", "")):
        r = httpx.get(site.url + path, timeout=10)
        assert r.status_code == 200, path
        assert kind in r.headers["content-type"], path


def test_dashboard_routes_stay_out_of_the_openapi_document(site):
    paths = httpx.get(site.url + "openapi.json", timeout=10).json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)
