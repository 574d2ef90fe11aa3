"""The receive methods of corral sockets (``recv``, ``recv_into``,
``recvfrom``, ``recvfrom_into``, ``recvmsg``, ``recvmsg_into``): a mixin of
:class:`~corral._socket_base._SocketCore`. ``corral/_socket.py`` explains the
design; each method's docstring states its completion semantics.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import index as _index
from typing import TYPE_CHECKING, Any, SupportsIndex

from ._core import (
    BusyResourceError,
    ClosedResourceError,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
)
from ._io.ops import (
    RecvmsgOp,
    RecvOp,
    pin,
)
from ._io.perform import perform

if TYPE_CHECKING:
    from typing_extensions import Buffer


from ._socket_base import (
    _BUSY,
    _CLOSED,
    _EMPTY_VIEW,
    _MSG_OOB,
    _MSG_PEEK,
    _closed_error,
    _SocketCore,
    _writable_view,
    decode_sockaddr,
)


class _Receiving(_SocketCore):
    """The receive methods (a mixin; see the module docstring)."""

    __slots__ = ()

    ################################################################
    # receiving
    ################################################################

    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        """Receive up to ``buflen`` bytes (``b""`` at end of stream), like
        :meth:`socket.socket.recv`.

        Stream sockets (``flags=0``) receive into the run's buffer pool: on
        io_uring the kernel picks a pool buffer only when data arrives, so
        an idle connection pins no memory; the bytes are copied out and the
        buffer returned. At most one pool buffer's worth arrives per call;
        bytes beyond ``buflen`` are kept in the socket's stash and returned
        first by the next receive. Datagram sockets and calls with flags
        receive into a private buffer of ``buflen`` bytes.

        Cancellation: either the bytes the kernel delivered are returned
        (the scope raises ``Cancelled`` at the next checkpoint), or
        ``Cancelled`` is raised and nothing was consumed. No byte is lost or
        duplicated.

        Raises:
          corral.BusyResourceError: another task is receiving.
          corral.ClosedResourceError: another task closed the socket.
          ValueError: negative ``buflen``.
          OSError: ``EBADF`` if closed; ``ECONNRESET``... from the kernel.
        """
        op = self._recv_op
        if flags or op is None or self._stash is not None or type(buflen) is not int or buflen <= 0:
            return await self._recv_slow(buflen, flags)
        if self._reader is not None:
            raise BusyResourceError(_BUSY)
        self._reader = op
        try:
            lease = await perform(op)
        except OSError:
            if self._fd < 0:
                raise ClosedResourceError(_CLOSED) from None
            raise
        finally:
            self._reader = None
            if self._closing_fd >= 0:
                self._finish_close()
        if lease is None:
            if self._fd < 0:
                raise ClosedResourceError(_CLOSED)
            return b""
        if self._fd < 0:
            lease.release()
            raise ClosedResourceError(_CLOSED)
        if lease.nbytes <= buflen:
            data = bytes(lease.data)
            lease.release()
            return data
        data = bytes(lease.data[:buflen])
        self._stash_rest(lease, buflen)
        return data

    async def _recv_slow(self, buflen: SupportsIndex, flags: SupportsIndex) -> bytes:
        buflen = _index(buflen)
        flags = _index(flags)
        if buflen < 0:
            raise ValueError("negative buffersize in recv")
        if self._stash is not None and not flags & _MSG_OOB:
            await checkpoint_if_cancelled()
            data = self._take_stash(buflen, peek=bool(flags & _MSG_PEEK))
            await cancel_shielded_checkpoint()
            return data
        if self._fd < 0:
            await checkpoint()
            raise _closed_error()
        if buflen == 0:
            # recv(2) of 0 bytes returns 0 at once on Linux, but an io_uring
            # RECV of length 0 waits until the socket is readable (observed
            # on 6.x; tests/test_socket.py::test_zero_length_receives).
            await checkpoint()
            return b""
        if not flags and self._pool_recv:
            return await self.recv(buflen)
        buf = bytearray(buflen)
        op = RecvOp(self._fd, buf, flags)
        n: int = await self._read(op)
        op.buffer = _EMPTY_VIEW
        if n == buflen:
            return bytes(buf)
        del buf[n:]
        return bytes(buf)

    async def recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into ``buffer`` (up to ``nbytes``, default all of it);
        return how many bytes were written. Like
        :meth:`socket.socket.recv_into`. Stashed bytes come first.

        The buffer is pinned (a ``bytearray`` cannot be resized) from the
        call until the op's terminal completion, and the kernel never writes
        into it after this call returns or raises: a cancelled call waits
        for the kernel to confirm the cancel (or returns the bytes it wrote).

        Raises:
          TypeError: ``buffer`` is not a writable bytes-like object.
          ValueError: negative ``nbytes``, or larger than the buffer.
          plus everything :meth:`recv` raises.
        """
        view = _writable_view(buffer, "recv_into")
        try:
            nbytes = _index(nbytes)
            if nbytes < 0:
                raise ValueError("negative buffersize in recv_into")
            if nbytes > len(view):
                raise ValueError("buffer too small for requested bytes")
            target = view[:nbytes] if nbytes else view
            try:
                return await self._recv_into_view(target, _index(flags))
            finally:
                # Unpin now, not when a traceback holding this frame dies.
                target.release()
        finally:
            view.release()

    async def _recv_into_view(self, target: memoryview, flags: int) -> int:
        if self._stash is not None and not flags & (_MSG_OOB | _MSG_PEEK):
            await checkpoint_if_cancelled()
            count = self._stash_into(target)
            await cancel_shielded_checkpoint()
            return count
        if self._fd < 0:
            await checkpoint()
            raise _closed_error()
        if not target:
            await checkpoint()  # see _recv_slow: never a zero-length op
            return 0
        op = RecvOp(self._fd, target, flags)
        try:
            n: int = await self._read(op)
        finally:
            op.buffer = _EMPTY_VIEW
        return n

    async def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        """Receive up to ``bufsize`` bytes and the sender's address, like
        :meth:`socket.socket.recvfrom` (a recvmsg op; the address is
        ``None`` where the kernel reports none, e.g. a connected TCP
        socket). Cancellation as :meth:`recv`; stashed bytes come first
        (with address ``None``)."""
        bufsize = _index(bufsize)
        flags = _index(flags)
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        data, _, _, address = await self._recvmsg(bufsize, 0, flags)
        return data, address

    async def recvfrom_into(
        self, buffer: Buffer, nbytes: int = 0, flags: int = 0
    ) -> tuple[int, Any]:
        """Like :meth:`socket.socket.recvfrom_into`; the buffer is pinned as
        in :meth:`recv_into`."""
        view = _writable_view(buffer, "recvfrom_into")
        try:
            nbytes = _index(nbytes)
            if nbytes < 0:
                raise ValueError("negative buffersize in recvfrom_into")
            if nbytes > len(view):
                raise ValueError("nbytes is greater than the length of the buffer")
            target = view[:nbytes] if nbytes else view
            try:
                n, _, _, address = await self._recvmsg_into([target], 0, _index(flags))
            finally:
                target.release()
            return n, address
        finally:
            view.release()

    async def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """Like :meth:`socket.socket.recvmsg`: ``(data, ancdata, msg_flags,
        address)``; ancillary data (``SCM_RIGHTS`` fds...) arrives when
        ``ancbufsize`` makes room for it. Cancellation as :meth:`recv`."""
        bufsize = _index(bufsize)
        ancbufsize = _index(ancbufsize)
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        if ancbufsize < 0:
            raise ValueError("invalid ancillary data buffer length")
        return await self._recvmsg(bufsize, ancbufsize, _index(flags))

    async def _recvmsg(
        self, bufsize: int, ancbufsize: int, flags: int
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        if self._stash is not None and not flags & _MSG_OOB:
            await checkpoint_if_cancelled()
            data = self._take_stash(bufsize, peek=bool(flags & _MSG_PEEK))
            await cancel_shielded_checkpoint()
            return data, [], 0, None
        if self._fd < 0:
            await checkpoint()
            raise _closed_error()
        if not bufsize and not ancbufsize and self._pool_recv:
            await checkpoint()  # see _recv_slow: never a zero-length op
            return b"", [], 0, None
        buf = bytearray(bufsize)
        op = RecvmsgOp(self._fd, [buf], ancbufsize, flags)
        try:
            n, ancdata, msg_flags, raw = await self._read(op)
        finally:
            op.buffers = []
        if n != bufsize:
            del buf[n:]
        return bytes(buf), ancdata, msg_flags, decode_sockaddr(raw)

    async def recvmsg_into(
        self, buffers: Iterable[Buffer], ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        """Like :meth:`socket.socket.recvmsg_into`; every buffer is pinned
        as in :meth:`recv_into`."""
        try:
            items = list(buffers)
        except TypeError:
            raise TypeError("recvmsg_into() argument 1 must be an iterable") from None
        views: list[memoryview] = []
        try:
            for item in items:
                try:
                    views.append(pin(item, writable=True))
                except TypeError:
                    raise TypeError(
                        "recvmsg_into() argument 1 must be an iterable of single-segment "
                        "read-write buffers"
                    ) from None
            ancbufsize = _index(ancbufsize)
            if ancbufsize < 0:
                raise ValueError("invalid ancillary data buffer length")
            return await self._recvmsg_into(views, ancbufsize, _index(flags))
        finally:
            for view in views:
                view.release()

    async def _recvmsg_into(
        self, views: list[memoryview], ancbufsize: int, flags: int
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        if self._stash is not None and not flags & (_MSG_OOB | _MSG_PEEK):
            await checkpoint_if_cancelled()
            total = 0
            for view in views:
                if self._stash is None:
                    break
                total += self._stash_into(view)
            await cancel_shielded_checkpoint()
            return total, [], 0, None
        if self._fd < 0:
            await checkpoint()
            raise _closed_error()
        op = RecvmsgOp(self._fd, views, ancbufsize, flags)
        try:
            n, ancdata, msg_flags, raw = await self._read(op)
        finally:
            op.buffers = []
        return n, ancdata, msg_flags, decode_sockaddr(raw)
