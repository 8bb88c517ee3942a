"""A tiny MaxMind DB (MMDB v2) writer, enough to build test databases.

The PyPI writers pull in netaddr or are unmaintained; the format is small (a binary search
tree over address bits, a data section of typed values, a metadata map after a marker), so
tests write it themselves. Supports IPv4 trees, non-overlapping networks, 24-bit records,
and the value types str, int (unsigned), float, dict, list.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from pathlib import Path
from typing import Any

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _ctrl(type_id: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 285:
        head, extra = 29, bytes([size - 29])
    elif size < 65_821:
        head, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        head, extra = 31, (size - 65_821).to_bytes(3, "big")
    if type_id <= 7:
        return bytes([(type_id << 5) | head]) + extra
    return bytes([head, type_id - 7]) + extra


class UInt:
    """An unsigned int of an explicit MMDB type (libmaxminddb checks metadata types)."""

    def __init__(self, value: int, type_id: int) -> None:
        self.value, self.type_id = value, type_id


def encode(value: Any) -> bytes:
    if isinstance(value, UInt):
        raw = value.value.to_bytes((value.value.bit_length() + 7) // 8, "big")
        return _ctrl(value.type_id, len(raw)) + raw
    if isinstance(value, str):
        raw = value.encode()
        return _ctrl(2, len(raw)) + raw
    if isinstance(value, float):
        return _ctrl(3, 8) + struct.pack(">d", value)
    if isinstance(value, bool):
        return _ctrl(14, int(value))
    if isinstance(value, int):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
        type_id = 5 if value < 2**16 else 6 if value < 2**32 else 9
        return _ctrl(type_id, len(raw)) + raw
    if isinstance(value, dict):
        return _ctrl(7, len(value)) + b"".join(encode(k) + encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _ctrl(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]],
               database_type: str = "Turnstile-Test-Country") -> Path:
    """Write an IPv4 database mapping each CIDR network to a record."""
    data = b""
    nodes: list[list[Any]] = [[None, None]]
    for cidr, record in networks.items():
        net = ipaddress.IPv4Network(cidr)
        offset = len(data)
        data += encode(record)
        bits = int(net.network_address)
        node = 0
        for depth in range(net.prefixlen):
            bit = (bits >> (31 - depth)) & 1
            if depth == net.prefixlen - 1:
                nodes[node][bit] = ("data", offset)
                break
            child = nodes[node][bit]
            if child is None:
                nodes.append([None, None])
                child = nodes[node][bit] = ("node", len(nodes) - 1)
            assert child[0] == "node", "overlapping networks are not supported"
            node = child[1]
    count = len(nodes)

    def record_value(entry: Any) -> int:
        if entry is None:
            return count
        kind, value = entry
        return value if kind == "node" else count + 16 + value

    tree = b"".join(
        record_value(left).to_bytes(3, "big") + record_value(right).to_bytes(3, "big")
        for left, right in nodes
    )
    metadata = {
        "binary_format_major_version": UInt(2, 5),
        "binary_format_minor_version": UInt(0, 5),
        "build_epoch": UInt(int(time.time()), 9),
        "database_type": database_type,
        "description": {"en": "test database"},
        "ip_version": UInt(4, 5),
        "languages": ["en"],
        "node_count": UInt(count, 6),
        "record_size": UInt(24, 5),
    }
    path.write_bytes(tree + b"\x00" * 16 + data + _METADATA_MARKER + encode(metadata))
    return path
