"""Shared command line of the echo servers: ``SERVER.py [--port N] [--backend B]``.

Every server listens on 127.0.0.1, prints ``port N`` on stdout once it
accepts connections (``--port 0``, the default, picks a free port) and
serves until killed. The handler echoes whatever it receives, in chunks of
up to ``RECV_SIZE`` bytes, with TCP_NODELAY on each connection.
"""

from __future__ import annotations

import argparse
import os
import sys

RECV_SIZE = 65536

# Run from a checkout without installing: make `import corral` find it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend", default=None, help="corral backend: io_uring or epoll")
    return parser.parse_args()


def announce(port: int) -> None:
    """Tell the harness where to connect (it waits for this line)."""
    print(f"port {port}", flush=True)
