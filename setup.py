"""Build hook for the io_uring extension; all metadata lives in pyproject.toml.

On Linux, ``pip install .`` / ``pip install -e .`` compile
``corral._io._uring_cffi`` (cffi API mode, see corral/_io/_uring_build.py);
it needs a C compiler but no liburing and no io_uring headers. Elsewhere no
extension is built (Windows uses cffi ABI mode at run time). Set
``CORRAL_BUILD_URING=0`` to skip the extension on Linux too; corral then
falls back to the epoll backend and says why.
"""

import os
import sys

from setuptools import setup

build_uring = sys.platform.startswith("linux") and os.environ.get("CORRAL_BUILD_URING", "1") != "0"

# The C sources reach the sdist through MANIFEST.in.
if build_uring:
    setup(cffi_modules=["corral/_io/_uring_build.py:ffibuilder"])
else:
    setup()
