import pytest
from flask import Flask, Response

from agent.capture import hash_consumer
from agent.wsgi import TurnstileWSGI, instrument_flask
from tests.unit.agent.conftest import TEST_HASH_KEY

pytestmark = pytest.mark.unit


def make_flask(sender):
    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def get_user(user_id):
        return {"id": user_id}

    @app.post("/echo")
    def echo():
        from flask import request
        return request.get_data()

    @app.get("/stream")
    def stream():
        return Response((b"x" * 10 for _ in range(7)), mimetype="text/plain")

    @app.get("/boom")
    def boom():
        raise ValueError("kaput")

    instrument_flask(app, sender)
    return app


def test_flask_route_rule_status_sizes_and_consumer(make_sender, fake_gateway):
    sender = make_sender()
    client = make_flask(sender).test_client()
    # Every WSGI server closes the response once sent; the test client leaves it to us.
    client.get("/users/5", headers={"X-Api-Key": "k1", "User-Agent": "ua"}).close()
    client.post("/echo", data=b"hello world").close()
    streamed = client.get("/stream")
    assert streamed.data == b"x" * 70
    streamed.close()
    client.get("/missing").close()
    assert sender.flush(5)
    user, echo, stream, missing = fake_gateway.events()
    assert user["endpoint"] == "/users/{user_id}" and user["path"] == "/users/5"
    assert user["function"] == "get_user" and user["api_key"] == hash_consumer("k1", TEST_HASH_KEY)
    assert user["status_code"] == 200 and user["user_agent"] == "ua"
    assert echo["request_bytes"] == 11 and echo["response_bytes"] == 11
    assert stream["response_bytes"] == 70
    assert missing["status_code"] == 404 and "endpoint" not in missing


def test_flask_exception_is_500_and_reraised(make_sender, fake_gateway):
    sender = make_sender()
    app = make_flask(sender)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ValueError, match="kaput"):
        app.test_client().get("/boom")
    assert sender.flush(5)
    (ev,) = fake_gateway.events()
    assert ev["status_code"] == 500 and ev["endpoint"] == "/boom"


def test_plain_wsgi_app_exception_before_start_response(make_sender, fake_gateway):
    sender = make_sender()

    def app(environ, start_response):
        raise KeyError("x")

    mw = TurnstileWSGI(app, sender)
    with pytest.raises(KeyError):
        mw({"REQUEST_METHOD": "GET", "PATH_INFO": "/a", "REMOTE_ADDR": "1.2.3.4"}, lambda *a: None)
    assert sender.flush(5)
    (ev,) = fake_gateway.events()
    assert ev["status_code"] == 500 and ev["ip"] == "1.2.3.4"


def test_error_while_streaming_is_recorded_once(make_sender, fake_gateway):
    sender = make_sender()

    def app(environ, start_response):
        start_response("200 OK", [])

        def body():
            yield b"abc"
            raise OSError("disk")

        return body()

    result = TurnstileWSGI(app, sender)({"REQUEST_METHOD": "GET", "PATH_INFO": "/s"},
                                        lambda *a: None)
    with pytest.raises(OSError):
        list(result)
    result.close()
    assert sender.flush(5)
    (ev,) = fake_gateway.events()
    assert ev["status_code"] == 200 and ev["response_bytes"] == 3
