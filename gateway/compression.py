"""Compressed bodies on `/v2`: `Content-Encoding: gzip | deflate` requests, gzipped answers.

A request body is read compressed up to the size limit, then inflated a chunk at a time and
refused (413) as soon as the inflated size passes the same limit: a gzip bomb (a few KiB that
inflate to gigabytes) costs at most the limit in memory. Answers are gzipped for a client that
accepts it once they are at least TURNOUT_GZIP_MIN_RESPONSE_BYTES.
"""

from __future__ import annotations

import zlib

from django.conf import settings

from gateway.http import Receive, Scope, header, read_body
from gateway.protocol import ProtocolError

SUPPORTED = ("gzip", "deflate")
CHUNK = 256 * 1024
# zlib's window bits: a gzip member; a zlib stream (RFC 1950, what HTTP calls "deflate"); raw deflate
# (RFC 1951, which some clients send as "deflate" anyway).
_GZIP, _ZLIB, _RAW = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS


async def read_request_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body, inflated when it is compressed; 413 past `limit` bytes before or after inflating."""
    encoding = (header(scope, b"content-encoding") or b"identity").strip().lower()
    if encoding == b"identity":
        return await read_body(scope, receive, limit)
    if encoding.decode("latin-1") not in SUPPORTED:
        shown = encoding.decode("latin-1", errors="replace")[:40]
        raise ProtocolError(
            415,
            f"unsupported Content-Encoding {shown!r}; send the body uncompressed or as {' or '.join(SUPPORTED)}",
            [(b"accept-encoding", ", ".join(SUPPORTED).encode())],
        )
    raw = await read_body(scope, receive, limit)
    if not raw:
        return raw  # nothing to inflate (tritonclient sends its last Content-Encoding with bodiless calls)
    if encoding == b"gzip":
        return inflate(raw, _GZIP, limit, "gzip")
    # "deflate" is a zlib stream by the HTTP standard; a raw deflate stream is what some clients send.
    wbits = _ZLIB if len(raw) >= 2 and (raw[0] & 0x0F) == 8 and (raw[0] << 8 | raw[1]) % 31 == 0 else _RAW
    return inflate(raw, wbits, limit, "deflate")


def inflate(data: bytes, wbits: int, limit: int, name: str) -> bytes:
    inflater = zlib.decompressobj(wbits)
    parts: list[bytes] = []
    size = 0
    pending = data
    try:
        while not inflater.eof:
            chunk = inflater.decompress(pending, CHUNK)
            size += len(chunk)
            if size > limit:
                raise ProtocolError(413, f"the body inflates to more than the limit of {limit} bytes")
            parts.append(chunk)
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                break
    except zlib.error as exc:
        raise ProtocolError(400, f"the body is not valid {name} data: {exc}") from None
    if not inflater.eof:
        raise ProtocolError(400, f"the {name} body ends before its compressed stream does")
    if inflater.unused_data.strip(b"\0"):
        raise ProtocolError(400, f"the body has data after the end of its {name} stream")
    return b"".join(parts)


def accepts_gzip(scope: Scope) -> bool:
    accepted = header(scope, b"accept-encoding")
    if not accepted:
        return False
    for item in accepted.decode("latin-1").lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=").strip()
            try:
                return not quality or float(quality) > 0
            except ValueError:
                return False
    return False


def compressed_answer(scope: Scope, body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """`body`, gzipped (with its Content-Encoding header added) when the client accepts it and it is large."""
    if len(body) < int(settings.TURNOUT["GZIP_MIN_RESPONSE_BYTES"]) or not accepts_gzip(scope):
        return body
    # Level 1: most of the saving on tensors of floats at a fraction of the default level's CPU.
    deflater = zlib.compressobj(1, zlib.DEFLATED, _GZIP)
    out = deflater.compress(body) + deflater.flush()
    headers += [(b"content-encoding", b"gzip"), (b"vary", b"accept-encoding")]
    return out
