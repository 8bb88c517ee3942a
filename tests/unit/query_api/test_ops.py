from types import SimpleNamespace

from query_api.ops import route_label


def test_metrics_label_routes_by_template_and_mounts_by_prefix():
    assert route_label({"route": SimpleNamespace(path="/api/v1/quotas/{api_key}"),
                        "path": "/api/v1/quotas/x"}) == "/api/v1/quotas/{api_key}"
    assert route_label({"path": "/static/dashboard.js"}) == "/static"
    assert route_label({"path": "/docs-assets/swagger-ui.css"}) == "/docs-assets"
    assert route_label({"path": "/wp-admin/x.php"}) == "unmatched"
