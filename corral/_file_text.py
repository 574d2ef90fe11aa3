"""corral's text file object: what ``open_file(..., "r")`` returns.

The text layer of :class:`io.TextIOWrapper`, async, over an
:class:`~corral._file_binary.AsyncBinaryFile`: an incremental decoder
(wrapped in :class:`io.IncrementalNewlineDecoder` for universal newlines)
turns chunks of bytes into characters, an incremental encoder does the
reverse, with ``encoding``, ``errors`` and ``newline`` meaning exactly what
they mean for :func:`open`.

Decoded characters not yet returned wait in ``_decoded`` (from ``_doff``).
For :meth:`AsyncTextFile.tell`, each chunk whose characters are still
(partly) buffered is remembered with the byte position and decoder state it
was decoded from; ``tell`` re-decodes the oldest one to find the byte
position and the characters to skip, and packs them into an opaque cookie
for :meth:`AsyncTextFile.seek` (as :class:`io.TextIOWrapper` does; when no
decoder state is pending the cookie is the plain byte position).

Cancellation: a chunk's bytes and characters are stored as soon as its
kernel read returns, and characters are handed out only when the call
returns, so a cancelled read or readline loses nothing: the next call
starts where the cancelled one started.
"""

from __future__ import annotations

import codecs
import io
import operator
import os
from collections import deque
from collections.abc import Iterable
from typing import Any

from ._abc import AsyncResource
from ._core import checkpoint
from ._file_binary import AsyncBinaryFile, _size_arg

_CLOSED = "I/O operation on closed file."
_CHUNK = 8192


class _Chunk:
    """Where a run of decoded characters came from."""

    __slots__ = ("flags", "nchars", "raw", "start")

    def __init__(self, start: int, flags: int, raw: bytes, nchars: int) -> None:
        self.start = start
        self.flags = flags
        self.raw = raw
        self.nchars = nchars


class AsyncTextFile(AsyncResource):
    """An asynchronous text file, as :func:`corral.open_file` returns for a
    text mode: :class:`io.TextIOWrapper`'s methods and attributes, with
    every I/O method async.

    Cancellation, for every async method: cancelled before its first kernel
    operation, a call has no effect. A kernel read that started is
    delivered; a read or readline cancelled between two kernel reads raises
    :exc:`corral.Cancelled` and the characters already read are returned by
    the next call (nothing is lost, ``tell()`` is unchanged). A write that
    started writes all its data.
    """

    def __init__(
        self,
        binary: AsyncBinaryFile,
        *,
        mode: str,
        encoding: str,
        errors: str,
        newline: str | None,
        line_buffering: bool,
    ) -> None:
        self._b: AsyncBinaryFile | None = binary
        self.mode = mode
        self._encoding = encoding
        self._errors = errors
        self._line_buffering = line_buffering
        self._readuniversal = not newline
        self._readtranslate = newline is None
        self._readnl = newline
        self._writetranslate = newline != ""
        self._writenl = newline or os.linesep
        codec = codecs.lookup(encoding)
        if not codec._is_text_encoding:
            raise LookupError(
                f"{encoding!r} is not a text encoding; use codecs.open() to handle arbitrary codecs"
            )
        self._decoder: Any = None
        if binary._readable:
            decoder: Any = codec.incrementaldecoder(errors)
            if self._readuniversal:
                decoder = io.IncrementalNewlineDecoder(decoder, self._readtranslate)
            self._decoder = decoder
        self._encoder: Any = None
        if binary._writable:
            self._encoder = codec.incrementalencoder(errors)
            if binary._seekable and binary._pos != 0:
                # Do not write a byte-order mark in the middle of a file.
                try:
                    self._encoder.setstate(0)
                except Exception:  # pragma: no cover - encoders without state
                    pass
        self._decoded = ""
        self._doff = 0
        self._chunks: deque[_Chunk] = deque()
        # Whether the decoder's state describes the position (False after a
        # write or a seek to 0: tell() is then the binary position).
        self._snap = False
        self._chunk_size = max(_CHUNK, binary._bufsize)

    # -- attributes -------------------------------------------------------------

    def __repr__(self) -> str:
        name = self._b.name if self._b is not None else "<detached>"
        return (
            f"<corral.TextIOWrapper name={name!r} mode={self.mode!r} encoding={self._encoding!r}>"
        )

    @property
    def buffer(self) -> AsyncBinaryFile:
        """The binary file underneath."""
        return self._binary()

    def _binary(self) -> AsyncBinaryFile:
        if self._b is None:
            raise ValueError("underlying buffer has been detached")
        return self._b

    @property
    def encoding(self) -> str:
        """The text encoding."""
        return self._encoding

    @property
    def errors(self) -> str:
        """The encoding error handler."""
        return self._errors

    @property
    def line_buffering(self) -> bool:
        """Whether ``buffering=1`` was given (writes are never held back)."""
        return self._line_buffering

    @property
    def newlines(self) -> str | tuple[str, ...] | None:
        """The newline kinds seen so far (universal newlines mode only)."""
        return getattr(self._decoder, "newlines", None)

    @property
    def name(self) -> object:
        """The name given to :func:`corral.open_file` (or the fd)."""
        return self._binary().name

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self._binary().closed

    @property
    def closefd(self) -> bool:
        """Whether closing this object closes the file descriptor."""
        return self._binary().closefd

    def fileno(self) -> int:
        """The file descriptor (see :meth:`AsyncBinaryFile.fileno`)."""
        return self._binary().fileno()

    def isatty(self) -> bool:
        """Whether the file is a terminal."""
        return self._binary().isatty()

    def readable(self) -> bool:
        """Whether the file was opened for reading."""
        return self._binary().readable()

    def writable(self) -> bool:
        """Whether the file was opened for writing."""
        return self._binary().writable()

    def seekable(self) -> bool:
        """Whether seek and tell work."""
        return self._binary().seekable()

    def _open_binary(self) -> AsyncBinaryFile:
        b = self._binary()
        if b._fd < 0:
            raise ValueError(_CLOSED)
        return b

    def _pre_read(self) -> AsyncBinaryFile:
        b = self._open_binary()
        if self._decoder is None:
            raise io.UnsupportedOperation("not readable")
        return b

    # -- decoding ---------------------------------------------------------------

    def _compact(self) -> None:
        chunks = self._chunks
        while chunks and self._doff >= chunks[0].nchars:
            n = chunks.popleft().nchars
            self._doff -= n
            self._decoded = self._decoded[n:]

    async def _read_chunk(self, b: AsyncBinaryFile) -> bool:
        """Decode one more chunk into the buffer; False at end of file."""
        dec_buffer, flags = self._decoder.getstate()
        start = b._pos - len(dec_buffer)
        data = await b._read_n(self._chunk_size, once=True)
        # Nothing below checkpoints: the chunk is stored before a cancel
        # could be raised.
        text = self._decoder.decode(data, not data)
        self._compact()
        self._snap = True
        if self._doff == len(self._decoded):
            self._decoded = text
            self._doff = 0
            self._chunks.clear()
        else:
            self._decoded += text
        if text or data:
            self._chunks.append(_Chunk(start, flags, dec_buffer + data, len(text)))
        return bool(data)

    def _take(self, n: int) -> str:
        doff = self._doff
        text = self._decoded[doff : doff + n]
        self._doff = doff + len(text)
        return text

    def _available(self) -> int:
        return len(self._decoded) - self._doff

    def _drop_decoded(self, *, reset: bool = True) -> None:
        self._decoded = ""
        self._doff = 0
        self._chunks.clear()
        self._snap = False
        if reset and self._decoder is not None:
            self._decoder.reset()

    # -- reading ----------------------------------------------------------------------

    async def read(self, size: int | None = -1) -> str:
        """Read up to ``size`` characters (to end of file if negative or
        ``None``); ``""`` at end of file."""
        b = self._pre_read()
        n = _size_arg(size)
        async with b._locked():
            if n < 0:
                data = await b._readall()
                text: str = self._decoded[self._doff :] + self._decoder.decode(data, True)
                # Not reset: ``newlines`` keeps what the decoder saw.
                self._drop_decoded(reset=False)
                return text
            if self._available() >= n:
                await checkpoint()
            while self._available() < n:
                if not await self._read_chunk(b):
                    break
            return self._take(n)

    def _find_eol(self, start: int) -> tuple[int, int]:
        """``(end, scanned)``: the index just past the first line ending at or
        after ``start`` in the buffer (-1 if none), and where to resume."""
        decoded = self._decoded
        if self._readtranslate:
            i = decoded.find("\n", start)
            return (i + 1 if i >= 0 else -1), len(decoded)
        if self._readuniversal:
            i = decoded.find("\n", start)
            j = decoded.find("\r", start, i if i >= 0 else len(decoded))
            if j >= 0:
                if j + 1 < len(decoded):
                    return (j + 2 if decoded[j + 1] == "\n" else j + 1), len(decoded)
                # A final "\r": "\r\n" may be split across chunks (the
                # newline decoder holds a trailing "\r" back except at EOF).
                return j + 1, len(decoded)
            return (i + 1 if i >= 0 else -1), len(decoded)
        nl = self._readnl or "\n"
        i = decoded.find(nl, start)
        if i >= 0:
            return i + len(nl), len(decoded)
        return -1, max(start, len(decoded) - len(nl) + 1)

    async def readline(self, size: int | None = -1) -> str:
        """Read one line, including its line ending (``newline`` decides what
        ends a line, as for :func:`open`), at most ``size`` characters if
        ``size >= 0``; ``""`` at end of file."""
        b = self._pre_read()
        limit = _size_arg(size)
        async with b._locked():
            return await self._readline(b, limit)

    async def _readline(self, b: AsyncBinaryFile, limit: int) -> str:
        scan = self._doff
        did_io = False
        while True:
            end, scan = self._find_eol(scan)
            avail = self._available()
            if end >= 0:
                n = end - self._doff
                break
            if 0 <= limit <= avail:
                n = limit
                break
            did_io = True
            rel = scan - self._doff
            if not await self._read_chunk(b):
                n = self._available()
                break
            # _read_chunk may have compacted the buffer: keep scan relative.
            scan = self._doff + rel
        if limit >= 0:
            n = min(n, limit)
        if not did_io:
            await checkpoint()
        return self._take(n)

    async def readlines(self, hint: int | None = -1) -> list[str]:
        """Read lines until end of file, or until their total length reaches
        ``hint`` if ``hint > 0``."""
        b = self._pre_read()
        limit = _size_arg(hint)
        lines: list[str] = []
        total = 0
        async with b._locked():
            while True:
                line = await self._readline(b, -1)
                if not line:
                    break
                lines.append(line)
                total += len(line)
                if 0 < limit <= total:
                    break
        return lines

    def __aiter__(self) -> AsyncTextFile:
        return self

    async def __anext__(self) -> str:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing ----------------------------------------------------------------------------

    async def write(self, text: str) -> int:
        """Write ``text``, translating ``"\\n"`` as ``newline`` says; returns
        ``len(text)``. Cancellation: as :meth:`AsyncBinaryFile.write`."""
        b = self._open_binary()
        if self._encoder is None:
            raise io.UnsupportedOperation("not writable")
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        length = len(text)
        if self._writetranslate and self._writenl != "\n" and "\n" in text:
            text = text.replace("\n", self._writenl)
        encoder = self._encoder
        state = encoder.getstate()
        data = encoder.encode(text)
        async with b._locked():
            # As io.TextIOWrapper does: decoded-but-unread text is dropped
            # and the write goes where the binary layer stands.
            if self._decoder is not None and (self._decoded or self._chunks):
                self._drop_decoded()
            try:
                await b._write(memoryview(data))
            except BaseException:
                # Nothing written (or the write failed): a byte-order mark
                # the encoder emitted must be emitted again next time.
                encoder.setstate(state)
                raise
        return length

    async def writelines(self, lines: Iterable[str]) -> None:
        """Write each string of ``lines`` (no separators added)."""
        for line in lines:
            await self.write(line)

    async def flush(self) -> None:
        """Nothing is held back for writing; checks the file is open and is a
        checkpoint."""
        self._open_binary()
        await checkpoint()

    async def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` bytes (default: the current position,
        from :meth:`tell`)."""
        b = self._open_binary()
        if size is None:
            size = await self.tell()
        return await b.truncate(size)

    async def fsync(self) -> None:
        """fsync(2) (see :meth:`AsyncBinaryFile.fsync`)."""
        await self._open_binary().fsync()

    async def fdatasync(self) -> None:
        """fdatasync(2)."""
        await self._open_binary().fdatasync()

    async def stat(self) -> os.stat_result:
        """The file's :class:`os.stat_result`."""
        return await self._open_binary().stat()

    # -- position -------------------------------------------------------------------------

    async def tell(self) -> int:
        """An opaque position for :meth:`seek` (the byte position when no
        decoder state is pending, as with :func:`open`)."""
        b = self._open_binary()
        if not b._seekable:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        await checkpoint()
        decoder = self._decoder
        if decoder is None or not self._snap:
            return b._pos
        self._compact()
        if not self._chunks:
            dec_buffer, flags = decoder.getstate()
            return _cookie(b._pos - len(dec_buffer), flags, 0)
        chunk = self._chunks[0]
        skip = self._doff
        if skip == 0:
            return _cookie(chunk.start, chunk.flags, 0)
        saved = decoder.getstate()
        try:
            decoder.setstate((b"", chunk.flags))
            best = (chunk.start, chunk.flags, skip)
            chars = 0
            raw = chunk.raw
            for i in range(len(raw)):
                chars += len(decoder.decode(raw[i : i + 1]))
                pending, flags = decoder.getstate()
                if chars > skip:
                    break
                if not pending:
                    best = (chunk.start + i + 1, flags, skip - chars)
                    if chars == skip:
                        break
        finally:
            decoder.setstate(saved)
        return _cookie(*best)

    async def seek(self, cookie: int, whence: int = 0) -> int:
        """Go to a position from :meth:`tell` (``whence=0``), the current one
        (``seek(0, 1)``) or the end (``seek(0, 2)``); other offsets raise as
        :meth:`io.TextIOWrapper.seek` does."""
        b = self._open_binary()
        cookie = operator.index(cookie)
        whence = operator.index(whence)
        if whence not in (0, 1, 2):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if not b._seekable:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        if whence == 1:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            cookie = await self.tell()
        elif whence == 2:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero end-relative seeks")
            pos = await b.seek(0, 2)
            self._drop_decoded()
            if self._encoder is not None:
                self._reset_encoder(pos)
            return pos
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie!r}")
        pos, flags, skip = cookie & ((1 << 64) - 1), (cookie >> 64) & ((1 << 64) - 1), cookie >> 128
        await b.seek(pos)
        self._drop_decoded()
        if self._decoder is not None:
            if cookie != 0:
                # Even flags == 0 is a state: for UTF-16 it means "byte order
                # already known", unlike the reset state (expect a BOM).
                self._decoder.setstate((b"", flags))
                self._snap = True
            if skip:
                async with b._locked():
                    while self._available() < skip:
                        if not await self._read_chunk(b):
                            raise OSError("can't restore logical file position")
                self._doff = skip
        if self._encoder is not None:
            self._reset_encoder(cookie)
        return cookie

    def _reset_encoder(self, position: int) -> None:
        if position == 0:
            self._encoder.reset()
        else:
            try:
                self._encoder.setstate(0)
            except Exception:  # pragma: no cover
                pass

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the file (shielded from cancellation, as
        :meth:`AsyncBinaryFile.aclose`)."""
        await self._binary().aclose()

    async def detach(self) -> AsyncBinaryFile:
        """Return the binary file underneath; this object becomes unusable."""
        b = self._binary()
        await checkpoint()
        self._b = None
        return b


def _cookie(pos: int, flags: int, skip: int) -> int:
    return pos | (flags << 64) | (skip << 128)
