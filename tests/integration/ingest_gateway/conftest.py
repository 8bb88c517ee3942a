"""Fixtures for the gateway: a real uvicorn on a free port, a topic, keys, a Kafka reader."""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from ingest_gateway.app import create_app
from ingest_gateway.settings import GatewaySettings
from schemas import keystore
from schemas.keys import KeyKind
from schemas.settings import DatabaseSettings, KafkaSettings
from turnstile_cli.stack import free_ports

GATEWAY_PARTITIONS = 3


@dataclass
class Gateway:
    url: str
    topic: str
    settings: GatewaySettings
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def partitions(self) -> int:
        return self.settings.kafka.events_partitions

    def post(self, body: Any, key: str | None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None, gzipped: bool = False,
             timeout: float = 20.0) -> httpx.Response:
        data = raw if raw is not None else orjson.dumps(body)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if gzipped:
            data = gzip.compress(data)
            hdrs["Content-Encoding"] = "gzip"
        if key is not None:
            hdrs["X-Api-Key"] = key
        return httpx.post(f"{self.url}/api/v1/events/batch", content=data, headers=hdrs,
                          timeout=timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "gateway did not stop"


@dataclass
class Keys:
    project: str
    write: str
    read: str
    admin: str
    write_id: str


@pytest.fixture
def gateway_topic(fresh_topic: Callable[..., str]) -> str:
    return fresh_topic(partitions=GATEWAY_PARTITIONS, prefix="gw")


@pytest.fixture
def start_gateway(stack, gateway_topic) -> Iterator[Callable[..., Gateway]]:
    """Factory: ``start_gateway(**settings)`` runs create_app(settings) under uvicorn."""
    started: list[Gateway] = []

    def start(**overrides: Any) -> Gateway:
        (port,) = free_ports(1)
        settings = GatewaySettings(
            port=port,
            workers=1,
            kafka=overrides.pop("kafka", None) or KafkaSettings(
                bootstrap=stack.kafka_bootstrap, events_topic=gateway_topic,
                events_partitions=GATEWAY_PARTITIONS),
            database=DatabaseSettings(url=stack.database_url),
            **overrides,
        )
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                log_level="warning", access_log=False, lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "gateway failed to start"
            assert time.monotonic() < deadline, "gateway did not start in 20 s"
            time.sleep(0.02)
        gw = Gateway(f"http://127.0.0.1:{port}", gateway_topic, settings, server, thread)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(start_gateway) -> Gateway:
    return start_gateway()


@pytest.fixture
def keys(db) -> Keys:
    project = f"proj-{uuid.uuid4().hex[:10]}"
    keystore.create_project(db, project)
    write = keystore.create_key(db, project, KeyKind.WRITE, "agent")
    read = keystore.create_key(db, project, KeyKind.READ, "dash")
    admin = keystore.create_key(db, project, KeyKind.ADMIN, "admin")
    return Keys(project, write.secret, read.secret, admin.secret, write.info.key_id)


@pytest.fixture
def make_keys(db) -> Callable[..., Keys]:
    def make(ip_privacy: str = "keep") -> Keys:
        project = f"proj-{uuid.uuid4().hex[:10]}"
        keystore.create_project(db, project)
        db.execute("UPDATE projects SET ip_privacy = %s WHERE project_id = %s",
                   (ip_privacy, project))
        write = keystore.create_key(db, project, KeyKind.WRITE, "agent")
        read = keystore.create_key(db, project, KeyKind.READ, "dash")
        admin = keystore.create_key(db, project, KeyKind.ADMIN, "admin")
        return Keys(project, write.secret, read.secret, admin.secret, write.info.key_id)

    return make
