"""cffi builder for ``corral._io._uring_cffi``, the C half of the io_uring ring.

Run by setuptools through ``setup.py`` (``cffi_modules``) on Linux only. The C
code talks to the kernel with raw ``syscall(2)``: no liburing, no other system
library, and no system io_uring header is required.

- ``_uring_abi.h``: every kernel structure and constant the code needs, under
  a ``cr_`` / ``CR_`` prefix with the kernel's ABI layout. When the machine
  has ``<linux/io_uring.h>`` the definitions are cross-checked against it
  with static assertions, so a wrong offset fails the build instead of
  corrupting memory at run time. Values an old header lacks are not
  cross-checked (the ABI never changes an existing value; kernels only add).
- ``_uring_ring.c``: preparing one SQE, flushing the SQ and waiting in a
  single ``io_uring_enter``, reaping CQEs in batches into caller arrays, the
  wakeup eventfd, provided-buffer groups. Facts about the kernel interface
  are documented, with their sources, next to the code that depends on them.
- ``CDEF`` below: the part Python sees. Policy (which setup flags to try,
  what to do with results) lives in Python: ``corral/_io/_ring.py``.

``CORRAL_URING_CFLAGS`` / ``CORRAL_URING_LDFLAGS`` add compiler and linker
flags (e.g. ``-fsanitize=address``).
"""

from __future__ import annotations

import os

from cffi import FFI  # type: ignore[import-untyped]  # no stubs; build-time only

CDEF = r"""
/* Returned by corral_ring_prep when the submission queue has no free entry.
   Positive, so it can never be confused with a -errno. */
#define CORRAL_SQ_FULL ...
/* user_data values >= CORRAL_RESERVED_USER_DATA belong to the ring itself
   (wakeup poll, legacy buffer provision); corral_ring_prep refuses them and
   reaping never reports their CQEs. */
#define CORRAL_RESERVED_USER_DATA ...

typedef struct corral_ring {
    int fd;                 /* ring fd, -1 once closed */
    int wake_fd;            /* eventfd watched by the wakeup poll */
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned setup_flags;   /* IORING_SETUP_* flags the kernel accepted */
    unsigned features;      /* io_uring_params.features */
    uint64_t enter_calls;   /* io_uring_enter syscalls made */
    uint64_t submitted;     /* SQEs the kernel consumed */
    uint64_t completions;   /* CQEs handed to the caller */
    uint64_t wakeups;       /* wakeup-poll completions seen */
    uint64_t overflow_flushes; /* extra enters to flush the CQ overflow list */
    uint64_t busy;          /* enters that returned EBUSY or EAGAIN */
    uint64_t interrupted;   /* enters that returned EINTR */
    uint64_t dropped;       /* enters that returned EBADR (CQEs lost) */
    uint64_t provide_errors; /* failed legacy PROVIDE_BUFFERS requests */
    ...;
} corral_ring;

typedef struct corral_bufring {
    unsigned bgid;
    unsigned entries;
    unsigned nbufs;
    unsigned buf_size;
    uint64_t added;         /* buffers published to the kernel */
    int legacy;             /* 1: IORING_OP_PROVIDE_BUFFERS, no ring */
    ...;
} corral_bufring;

int corral_ring_setup(corral_ring *r, unsigned entries, unsigned cq_entries,
                      unsigned flags, int refuse_errno, unsigned refuse_flags);
int corral_ring_close(corral_ring *r);
int corral_ring_prep(corral_ring *r, uint8_t opcode, int32_t fd, uint64_t addr,
                     uint32_t len, uint64_t off, uint32_t op_flags,
                     uint64_t user_data, uint8_t sqe_flags, uint16_t ioprio,
                     uint16_t buf_index, uint32_t file_index, uint64_t addr3);
/* Short forms of corral_ring_prep (same result codes; other fields 0):
   prep_buf takes the buffer as a pointer (NULL/len 0: address 0),
   prep_select sets IOSQE_BUFFER_SELECT with group bgid. */
int corral_ring_prep_simple(corral_ring *r, uint8_t opcode, int32_t fd,
                            uint64_t addr, uint32_t len, uint64_t off,
                            uint32_t op_flags, uint64_t user_data);
int corral_ring_prep_buf(corral_ring *r, uint8_t opcode, int32_t fd,
                         char *buf, uint32_t len, uint64_t off,
                         uint32_t op_flags, uint64_t user_data);
int corral_ring_prep_select(corral_ring *r, uint8_t opcode, int32_t fd,
                            uint32_t len, uint64_t off, uint32_t op_flags,
                            uint64_t user_data, uint16_t ioprio, uint16_t bgid);
int corral_ring_submit(corral_ring *r);
int corral_ring_submit_and_wait(corral_ring *r, unsigned wait_nr,
                                int64_t timeout_ns, uint64_t *user_data,
                                int32_t *res, uint32_t *flags, unsigned max);
/* Bind the result arrays once; corral_ring_turn(r, wait_nr, timeout_ns) is
   then corral_ring_submit_and_wait into them (-EINVAL if none are bound).
   The arrays must stay alive (and unresized) while the ring is used. */
int corral_ring_set_results(corral_ring *r, uint64_t *user_data, int32_t *res,
                            uint32_t *flags, unsigned max);
int corral_ring_turn(corral_ring *r, unsigned wait_nr, int64_t timeout_ns);
int corral_ring_reap(corral_ring *r, uint64_t *user_data, int32_t *res,
                     uint32_t *flags, unsigned max);
int corral_ring_wakeup(corral_ring *r);
unsigned corral_ring_sq_space(corral_ring *r);
unsigned corral_ring_sq_pending(corral_ring *r);
unsigned corral_ring_cq_ready(corral_ring *r);
unsigned corral_ring_sq_flags(corral_ring *r);
unsigned corral_ring_cq_overflow(corral_ring *r);
int corral_ring_probe(corral_ring *r, uint8_t *supported, unsigned n);
int corral_ring_register(corral_ring *r, unsigned opcode, void *arg,
                         unsigned nr_args);
int corral_ring_register_files_sparse(corral_ring *r, unsigned n);
int corral_ring_update_files(corral_ring *r, unsigned offset,
                             int32_t *fds, unsigned n);

int corral_bufring_register(corral_ring *r, corral_bufring *b, uint16_t bgid,
                            unsigned entries, void *slab, unsigned buf_size,
                            unsigned nbufs, int legacy);
int corral_bufring_add(corral_bufring *b, unsigned bid);
int corral_bufring_add_range(corral_bufring *b, unsigned first, unsigned count);
int corral_bufring_unregister(corral_ring *r, corral_bufring *b);
"""

_HERE = os.path.dirname(os.path.abspath(__file__))

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "corral._io._uring_cffi",
    # The C lives in real files next to this one (installed as package data so
    # an sdist can rebuild): _uring_abi.h (kernel ABI) and _uring_ring.c.
    '#include "_uring_ring.c"',
    include_dirs=[_HERE],
    depends=[os.path.join(_HERE, "_uring_abi.h"), os.path.join(_HERE, "_uring_ring.c")],
    extra_compile_args=[
        "-O2",
        "-std=gnu11",
        "-Wall",
        "-Wno-unused-function",
        *os.environ.get("CORRAL_URING_CFLAGS", "").split(),
    ],
    extra_link_args=os.environ.get("CORRAL_URING_LDFLAGS", "").split(),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
