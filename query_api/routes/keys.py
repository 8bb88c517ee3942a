"""``/api/v1/keys``: an admin key creates, lists and revokes its own project's keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from query_api.deps import AdminKey, ConnDep, KeyCacheDep
from query_api.guards import StorableText
from query_api.models import KeyItem, NewKeyResponse
from query_api.problems import ProblemError
from schemas import keystore
from schemas.keys import KeyInfo, KeyKind

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class NewKeyRequest(BaseModel):
    kind: KeyKind = Field(description="write (agents), read (dashboards) or admin")
    name: StorableText = Field(default="", max_length=200)


def key_json(info: KeyInfo) -> dict[str, Any]:
    return {"key_id": info.key_id, "kind": info.kind.value, "name": info.name,
            "prefix": info.prefix, "created_at": info.created_at,
            "revoked_at": info.revoked_at}


@router.get("", response_model=list[KeyItem])
def list_keys(key: AdminKey, conn: ConnDep) -> list[dict[str, Any]]:
    """All keys of the project, revoked ones included (prefix only, never secrets)."""
    return [key_json(k) for k in keystore.list_keys(conn, key.project_id)]


@router.post("", response_model=NewKeyResponse, status_code=201)
def create_key(key: AdminKey, conn: ConnDep, body: NewKeyRequest) -> dict[str, Any]:
    """Create a key; its secret is in this response only."""
    new = keystore.create_key(conn, key.project_id, body.kind, body.name)
    return {**key_json(new.info), "secret": new.secret}


@router.delete("/{key_id}", status_code=204)
def revoke_key(key: AdminKey, conn: ConnDep, cache: KeyCacheDep,
               key_id: Annotated[str, Path(max_length=64)]) -> Response:
    """Revoke a key of this project; other processes refuse it within their cache TTL."""
    if not keystore.revoke_key(conn, key.project_id, key_id):
        raise ProblemError(404, "Not found", f"no active key {key_id} in this project",
                           invalid_params=[("key_id", "no such active key")])
    cache.forget_key(key_id)
    return Response(status_code=204)
