from datetime import timedelta

from tests.integration.query_api.fixtures import Metric, insert_metrics


def test_keys_are_created_listed_and_revoked_by_an_admin(world):
    c, admin = world.client, world.a.h("admin")
    r = c.post("/api/v1/keys", headers=admin, json={"kind": "read", "name": "wall screen"})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["secret"].startswith("tsk_r_") and new["name"] == "wall screen"
    auth = {"Authorization": f"Bearer {new['secret']}"}
    assert c.get("/api/v1/analytics/realtime", headers=auth).status_code == 200
    listed = c.get("/api/v1/keys", headers=admin).json()
    assert new["key_id"] in {k["key_id"] for k in listed}
    assert all("secret" not in k for k in listed)
    assert c.delete(f"/api/v1/keys/{new['key_id']}", headers=admin).status_code == 204
    assert c.get("/api/v1/analytics/realtime", headers=auth).status_code == 401
    again = c.delete(f"/api/v1/keys/{new['key_id']}", headers=admin)
    assert again.status_code == 404 and again.json()["invalid_params"][0]["name"] == "key_id"


def test_an_admin_cannot_revoke_another_projects_key(world):
    b_keys = world.client.get("/api/v1/keys", headers=world.b.h("admin")).json()
    r = world.client.delete(f"/api/v1/keys/{b_keys[0]['key_id']}", headers=world.a.h("admin"))
    assert r.status_code == 404
    assert world.client.get("/api/v1/analytics/realtime", headers=world.b.h()).status_code == 200


def test_bad_key_kind_is_a_named_problem(world):
    r = world.client.post("/api/v1/keys", headers=world.a.h("admin"), json={"kind": "root"})
    assert r.status_code == 400 and r.json()["invalid_params"][0]["name"] == "kind"


def test_quotas_report_usage_remaining_and_reset(world, db):
    c, admin = world.client, world.a.h("admin")
    minute = world.now.replace(second=0)
    insert_metrics(db, "metrics_1m", [
        Metric(minute, world.a.project_id, "quota-key", "/q", "GET", 2, [1.0] * 7),
        Metric(minute - timedelta(days=40), world.a.project_id, "quota-key", "/q", "GET", 2,
               [1.0] * 50),  # another month: not counted
    ])
    put = c.put("/api/v1/quotas/quota-key", headers=admin,
                json={"monthly_requests": 100, "requests_per_minute": 5})
    assert put.status_code == 200, put.text
    status = c.get("/api/v1/quotas/quota-key", headers=world.a.h()).json()
    assert status["monthly"] == {"limit": 100, "used": 7, "remaining": 93,
                                 "reset_at": status["monthly"]["reset_at"]}
    assert status["monthly"]["reset_at"].endswith("-01T00:00:00Z")
    assert status["per_minute"]["used"] == 7 and status["per_minute"]["remaining"] == 0
    assert status["exceeded"] is True
    assert [q["api_key"] for q in c.get("/api/v1/quotas", headers=admin).json()] == ["quota-key"]
    assert c.put("/api/v1/quotas/quota-key", headers=world.a.h(),
                 json={"monthly_requests": 1}).status_code == 403
    bad = c.put("/api/v1/quotas/quota-key", headers=admin, json={"monthly_requests": -1})
    assert bad.status_code == 400
    assert bad.json()["invalid_params"][0]["name"] == "monthly_requests"
    assert c.delete("/api/v1/quotas/quota-key", headers=admin).status_code == 204
    unlimited = c.get("/api/v1/quotas/quota-key", headers=world.a.h()).json()
    assert unlimited["monthly"]["limit"] is None and unlimited["exceeded"] is False
    assert c.get("/api/v1/quotas/quota-key", headers=world.b.h()).json()["monthly"]["used"] == 0


def test_billing_usage_sums_days_with_reconciliation_status(world):
    body = world.client.get("/api/v1/billing/usage", headers=world.a.h(),
                            params={"period": "2025-06"}).json()
    by_key = {c["api_key"]: c for c in body["consumers"]}
    assert body["period"] == "2025-06" and set(by_key) == {"cust-1", "cust-2"}
    assert by_key["cust-1"]["total_requests"] == 200
    assert by_key["cust-1"]["requests_by_tier"] == {"default": 200}
    assert by_key["cust-1"]["reconciliation_status"] == "ok"
    assert by_key["cust-2"]["reconciliation_status"] == "unexplained"
    assert [d["day"] for d in by_key["cust-2"]["days"]] == ["2025-06-02", "2025-06-03"]
    one = world.client.get("/api/v1/billing/usage", headers=world.a.h(),
                           params={"period": "2025-06", "api_key": "cust-2",
                                   "format": "csv"})
    assert one.text.splitlines()[0].startswith("api_key,day,total_requests")
    assert len(one.text.splitlines()) == 3
    empty = world.client.get("/api/v1/billing/usage", headers=world.a.h(),
                             params={"period": "2025-07"}).json()
    assert empty["consumers"] == []
