import pytest

READ_ROUTES = [
    ("/api/v1/analytics/realtime", {"window": "60m"}),
    ("/api/v1/analytics/historical", {"start": "2025-06-02", "end": "2025-06-03",
                                      "granularity": "1h"}),
    ("/api/v1/analytics/historical", {"start": "2025-06-02T10:00:00Z",
                                      "end": "2025-06-02T11:00:00Z", "granularity": "1m"}),
    ("/api/v1/analytics/timeseries/2025-06-02/2025-06-03/", {"group": "api_key"}),
    ("/api/v1/analytics/timeseries/2025-06-02/2025-06-03/",
     {"group": "country", "granularity": "30"}),
    ("/api/v1/analytics/endpoints", {"start": "2025-06-01", "end": "2025-06-10"}),
    ("/api/v1/analytics/consumers", {"start": "2025-06-01", "end": "2025-06-10"}),
    ("/api/v1/analytics/countries", {"start": "2025-06-01", "end": "2025-06-10"}),
    ("/api/v1/analytics/requests", {"start": "2025-06-01", "end": "2025-06-10"}),
    ("/api/v1/billing/usage", {"period": "2025-06"}),
    ("/api/v1/quotas/cust-b", {}),
]


@pytest.mark.parametrize(("path", "params"), READ_ROUTES)
def test_a_key_never_sees_another_projects_data(world, path, params):
    """Each tenant sees its own rows and none of the other's, on every route."""
    a = world.client.get(path, params=params, headers=world.a.h())
    b = world.client.get(path, params=params, headers=world.b.h())
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert "cust-b" not in a.text.replace('"api_key":"cust-b"', "") or path.endswith("cust-b")
    assert "/secret" not in a.text and "JP" not in a.text and world.b.project_id not in a.text
    assert "cust-1" not in b.text and "/users" not in b.text and world.a.project_id not in b.text
    if path.endswith("cust-b"):
        assert a.json()["monthly"]["used"] == 0 and b.json()["monthly"]["used"] > 0


def test_project_cannot_be_chosen_by_a_parameter(world):
    r = world.client.get("/api/v1/analytics/consumers", headers=world.a.h(), params={
        "project_id": world.b.project_id, "start": "2025-06-01", "end": "2025-06-10"})
    assert r.status_code == 200 and "cust-b" not in r.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"X-API-Key": "tsk_r_" + "x" * 43}])
def test_missing_or_unknown_keys_get_401_problem(world, headers):
    r = world.client.get("/api/v1/analytics/realtime", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_write_keys_cannot_read_and_read_keys_cannot_manage(world):
    assert world.client.get("/api/v1/analytics/realtime",
                            headers=world.a.h("write")).status_code == 403
    assert world.client.get("/api/v1/keys", headers=world.a.h("read")).status_code == 403
    assert world.client.get("/api/v1/analytics/realtime",
                            headers={"X-API-Key": world.a.admin}).status_code == 200


def test_openapi_documents_every_route(world):
    spec = world.client.get("/openapi.json").json()
    for path in ("/api/v1/analytics/realtime", "/api/v1/analytics/historical",
                 "/api/v1/analytics/timeseries/{start}/{end}/", "/api/v1/billing/usage",
                 "/api/v1/keys", "/api/v1/quotas/{api_key}"):
        assert path in spec["paths"]
    assert world.client.get("/docs").status_code == 200
