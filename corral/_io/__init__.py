"""The completion core: operation records, ``perform()``, the ring pool and the
backends (io_uring, epoll adapter, fake kernel; IOCP and AFD on Windows).

This package only re-exports.
"""
