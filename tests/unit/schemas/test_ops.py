import httpx
from prometheus_client import Counter

from schemas.ops import OpsServer

_PROBE = Counter("turnstile_test_ops_probe", "A counter only this test increments.")


def test_ops_server_serves_health_readiness_and_metrics():
    ready = {"kafka": True}
    server = OpsServer("probe", 0, checks={"kafka": lambda: ready["kafka"],
                                           "broken": lambda: True}).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        _PROBE.inc(3)
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok", "component": "probe"}
        assert httpx.get(f"{base}/readyz").status_code == 200
        ready["kafka"] = False
        answer = httpx.get(f"{base}/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"] == {"kafka": "failing", "broken": "ok"}
        assert "turnstile_test_ops_probe_total 3.0" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/nothing").status_code == 404
    finally:
        server.stop()


def test_a_check_that_raises_reports_failing_instead_of_crashing():
    def explode() -> bool:
        raise RuntimeError("dependency gone")

    server = OpsServer("probe", 0, checks={"db": explode}).start()
    try:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/readyz")
        assert answer.status_code == 503 and answer.json()["checks"] == {"db": "failing"}
    finally:
        server.stop()
