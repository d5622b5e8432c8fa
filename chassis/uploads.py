"""Reading an upload's body as it arrives: a size limit, the `file` part of a multipart form without
spooling the whole form first, and a spool on disk so that no database connection waits on the client.
DESIGN.md §5: a CSV upload is a multipart field named `file` or a `text/csv` body."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from chassis.problems import Problem, invalid_field

FILE_FIELD = "file"


CSV_MEDIA_TYPES = ("text/csv", "application/csv", "text/plain")


def too_large(limit: int) -> Problem:
    return Problem(
        413,
        "upload_too_large",
        detail=f"The upload is larger than the {limit} bytes this service accepts; split the file.",
    )


async def limited_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        if chunk:
            yield chunk


SPOOL_IN_MEMORY = 2**20
"""Uploads up to this size stay in memory; larger ones go to a temporary file."""
REPLAY_CHUNK = 64 * 2**10


async def spool(chunks: AsyncIterator[bytes]) -> IO[bytes]:
    """The whole upload, received at the client's pace before any database work starts, rewound.

    A slow or stalled client then costs a file descriptor and some disk, never a pooled connection.
    The caller closes it (it is deleted on close)."""
    spooled: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        async for chunk in chunks:
            spooled.write(chunk)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled


async def replay(spooled: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := spooled.read(REPLAY_CHUNK):
        yield chunk


class MultipartFile:
    """Feeds a multipart/form-data body and hands out the bytes of its `file` part as they come."""

    def __init__(self, content_type: str) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise Problem(400, "bad_multipart", detail="The multipart body names no boundary.")
        self.found = False
        self.file_name: str | None = None
        self._header_field = b""
        self._header_value = b""
        self._in_file = False
        self._out: list[bytes] = []
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_data,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    async def file_bytes(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The bytes of the `file` part as the body arrives (the other parts are dropped)."""
        async for chunk in body:
            for piece in self.feed(chunk):
                yield piece

    def feed(self, chunk: bytes) -> list[bytes]:
        try:
            self._parser.write(chunk)
        except Exception as exc:
            raise Problem(400, "bad_multipart", detail=f"The multipart body is malformed: {exc}") from None
        out, self._out = self._out, []
        return out

    def _part_begin(self) -> None:
        self._in_file = False

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            _, params = parse_options_header(self._header_value)
            if params.get(b"name") == FILE_FIELD.encode() and not self.found:
                self._in_file = True
                self.found = True
                name = params.get(b"filename")
                self.file_name = name.decode(errors="replace")[:200] if name else None
        self._header_field = b""
        self._header_value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._out.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        self._in_file = False


async def spooled_csv(request: Request, limit: int) -> IO[bytes]:
    """The CSV file of an upload (a `text/csv` body or the multipart `file` field), spooled and rewound;
    415 for any other body, 413 past `limit` bytes, 422 for a form without a `file` field."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    body = limited_body(request, limit)
    form: MultipartFile | None = None
    if media == "multipart/form-data":
        form = MultipartFile(content_type)
        body = form.file_bytes(body)
    elif media not in CSV_MEDIA_TYPES:
        raise Problem(
            415, "unsupported_media_type", detail="Send a text/csv body or a multipart field named `file`."
        )
    spooled = await spool(body)
    if form is not None and not form.found:
        spooled.close()
        message = "The multipart form has no field named `file`."
        raise invalid_field("file", "missing", message, problem="missing_file", detail=message)
    return spooled
