/* corral's io_uring ring: setup, SQE preparation, submit+wait+reap in one
 * io_uring_enter, the wakeup eventfd, provided-buffer groups. Raw syscalls
 * only (no liburing). Compiled into corral._io._uring_cffi by
 * corral/_io/_uring_build.py, whose CDEF declares the public part; the
 * Python side and the contract are in corral/_io/_ring.py. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <poll.h>

#include "_uring_abi.h"

/* ------------------------------------------------------------------------
 * Our state.
 * ------------------------------------------------------------------------ */
#define CORRAL_SQ_FULL 1
#define CORRAL_RESERVED_USER_DATA (UINT64_MAX - 15)
#define CORRAL_WAKE_USER_DATA UINT64_MAX
#define CORRAL_PROVIDE_USER_DATA (UINT64_MAX - 1)

struct corral_bufring;

typedef struct corral_ring {
    int fd;
    int wake_fd;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned setup_flags;
    unsigned features;
    uint64_t enter_calls;
    uint64_t submitted;
    uint64_t completions;
    uint64_t wakeups;
    uint64_t overflow_flushes;
    uint64_t busy;
    uint64_t interrupted;
    uint64_t dropped;
    uint64_t provide_errors;

    /* private */
    void *sq_map;  size_t sq_map_len;
    void *cq_map;  size_t cq_map_len;   /* == sq_map with SINGLE_MMAP */
    struct cr_sqe *sqes; size_t sqes_len;
    unsigned *sq_khead, *sq_ktail, *sq_kflags, *sq_array;
    unsigned *cq_khead, *cq_ktail, *cq_koverflow;
    struct cr_cqe *cqes;
    unsigned sq_mask, cq_mask;
    unsigned sqe_tail;        /* next SQE we fill; published at submit */
    int wake_armed;           /* the wakeup poll is in flight */
    int wake_multishot;       /* 0 after the kernel refused POLL_ADD_MULTI */
    struct corral_bufring *legacy_head; /* legacy groups */
    unsigned legacy_pending;  /* adds waiting for an SQE, all groups */
    /* result arrays of corral_ring_turn (corral_ring_set_results) */
    uint64_t *out_ud; int32_t *out_res; uint32_t *out_fl; unsigned out_max;
} corral_ring;

typedef struct corral_bufring {
    unsigned bgid;
    unsigned entries;
    unsigned nbufs;
    unsigned buf_size;
    uint64_t added;
    int legacy;

    /* private */
    struct cr_buf *ring;      /* page-aligned, mmap'd, entries * 16 bytes */
    size_t ring_len;
    char *slab;
    unsigned mask;
    uint16_t tail;
    int registered;
    /* legacy mode: ids waiting for an SQE (each id at most once, so nbufs
       slots suffice), and the owner's list of legacy groups */
    corral_ring *owner;
    uint16_t *pending;        /* circular: npending ids from phead */
    unsigned phead, npending;
    struct corral_bufring *next;
} corral_bufring;

static void cr_flush_provides(corral_ring *r);

static inline long cr_enter(int fd, unsigned to_submit, unsigned min_complete,
                            unsigned flags, void *arg, size_t argsz)
{
    long ret = syscall(__NR_io_uring_enter, fd, to_submit, min_complete,
                       flags, arg, argsz);
    return ret < 0 ? -errno : ret;
}

static inline long cr_register(int fd, unsigned opcode, void *arg, unsigned nr)
{
    long ret = syscall(__NR_io_uring_register, fd, opcode, arg, nr);
    return ret < 0 ? -errno : ret;
}

/* ------------------------------------------------------------------------
 * Memory ordering (io_uring_setup(2), "the application must use the
 * appropriate barriers"; the kernel's io_uring/io_uring.c header comment):
 *  - SQ: we write SQEs, then store the SQ tail with release so the kernel
 *    (which loads it with acquire) sees complete entries. We load the SQ
 *    head with acquire to know which entries the kernel has consumed.
 *  - CQ: we load the CQ tail with acquire (pairs with the kernel's release
 *    after writing CQEs), read the entries, then store the CQ head with
 *    release so the kernel never overwrites an entry we are still reading.
 *  - Only we write sq_tail and cq_head, so our own loads of them are plain.
 * ------------------------------------------------------------------------ */
#define LOAD_ACQ(p)      __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_REL(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static void cr_unmap(corral_ring *r)
{
    if (r->sqes) munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
    if (r->sq_map) munmap(r->sq_map, r->sq_map_len);
    r->sqes = NULL; r->sq_map = NULL; r->cq_map = NULL;
}

/* Closing does NOT wait for in-flight requests (io_uring_setup(2): closing
   the fd frees the context; teardown runs asynchronously in the kernel,
   cancelling what it can). Any memory an in-flight request may still touch
   -- the caller's buffers, a provided-buffer slab -- must therefore outlive
   it: the caller must cancel and reap until nothing is in flight BEFORE
   calling this. Our own wakeup poll touches no user memory, so it needs no
   draining. Idempotent. */
int corral_ring_close(corral_ring *r)
{
    if (r->fd < 0) return 0;
    cr_unmap(r);
    close(r->fd);
    r->fd = -1;
    if (r->wake_fd >= 0) {
        close(r->wake_fd);
        r->wake_fd = -1;
    }
    r->wake_armed = 0;
    return 0;
}

unsigned corral_ring_sq_space(corral_ring *r)
{
    if (r->fd < 0) return 0;
    return r->sq_entries - (r->sqe_tail - LOAD_ACQ(r->sq_khead));
}

/* SQEs filled but not yet consumed by the kernel. */
unsigned corral_ring_sq_pending(corral_ring *r)
{
    if (r->fd < 0) return 0;
    return r->sqe_tail - LOAD_ACQ(r->sq_khead);
}

unsigned corral_ring_cq_ready(corral_ring *r)
{
    if (r->fd < 0) return 0;
    return LOAD_ACQ(r->cq_ktail) - *r->cq_khead;
}

unsigned corral_ring_sq_flags(corral_ring *r)
{
    if (r->fd < 0) return 0;
    return LOAD_ACQ(r->sq_kflags);
}

/* The kernel's count of CQEs it could not post and had to drop (only
   non-zero without IORING_FEAT_NODROP or when an overflow allocation
   failed). */
unsigned corral_ring_cq_overflow(corral_ring *r)
{
    if (r->fd < 0) return 0;
    return LOAD_ACQ(r->cq_koverflow);
}

static inline struct cr_sqe *cr_get_sqe(corral_ring *r)
{
    unsigned head = LOAD_ACQ(r->sq_khead);
    if (r->sqe_tail - head >= r->sq_entries)
        return NULL;
    return &r->sqes[r->sqe_tail++ & r->sq_mask];
}

static inline void cr_fill(struct cr_sqe *s, uint8_t opcode, int32_t fd,
                           uint64_t addr, uint32_t len, uint64_t off,
                           uint32_t op_flags, uint64_t user_data,
                           uint8_t sqe_flags, uint16_t ioprio,
                           uint16_t buf_index, uint32_t file_index,
                           uint64_t addr3)
{
    /* Every field is written: an SQE slot is reused and the kernel rejects
       requests whose unused fields are non-zero (EINVAL). */
    s->opcode = opcode;
    s->flags = sqe_flags;
    s->ioprio = ioprio;
    s->fd = fd;
    s->off = off;
    s->addr = addr;
    s->len = len;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    /* poll32_events is stored word-swapped on big-endian (liburing's
       io_uring_prep_poll_add(3) does the same swap). */
    if (opcode == CR_OP_POLL_ADD)
        op_flags = (op_flags << 16) | (op_flags >> 16);
#endif
    s->op_flags = op_flags;
    s->user_data = user_data;
    s->buf_index = buf_index;
    s->personality = 0;
    s->file_index = file_index;
    s->addr3 = addr3;
    s->pad2 = 0;
}

/* Prepare one SQE. Returns 0, CORRAL_SQ_FULL when every SQ entry is filled
   and not yet consumed by the kernel (nothing was written: flush with
   corral_ring_submit and call again -- an op is never dropped), or -errno:
   -EBADF on a closed ring, -EINVAL for the reserved user_data. The SQE
   reaches the kernel at the next submit. */
int corral_ring_prep(corral_ring *r, uint8_t opcode, int32_t fd, uint64_t addr,
                     uint32_t len, uint64_t off, uint32_t op_flags,
                     uint64_t user_data, uint8_t sqe_flags, uint16_t ioprio,
                     uint16_t buf_index, uint32_t file_index, uint64_t addr3)
{
    struct cr_sqe *s;
    if (r->fd < 0) return -EBADF;
    if (user_data >= CORRAL_RESERVED_USER_DATA) return -EINVAL;
    /* Adds that found the SQ full go first, so a request never overtakes a
       buffer given before it. */
    if (r->legacy_pending) {
        cr_flush_provides(r);
        if (r->legacy_pending) return CORRAL_SQ_FULL;
    }
    s = cr_get_sqe(r);
    if (!s) return CORRAL_SQ_FULL;
    cr_fill(s, opcode, fd, addr, len, off, op_flags, user_data, sqe_flags,
            ioprio, buf_index, file_index, addr3);
    return 0;
}

/* Short forms of corral_ring_prep for the per-op hot path: the same result
   codes, fewer arguments (each argument cffi converts costs time on every
   op), every other SQE field zero.
   - prep_simple: opcode, fd, addr, len, off, op_flags, user_data.
   - prep_buf: the same with the buffer given as a pointer (the cdata of
     ffi.from_buffer, so Python need not turn it into an integer); a NULL or
     zero-length buffer is passed as address 0.
   - prep_select: a buffer-selecting request (IOSQE_BUFFER_SELECT from
     group `bgid`, length `len`), with `ioprio` for the multishot flags. */
static inline int cr_prep_short(corral_ring *r, uint8_t opcode, int32_t fd,
                                uint64_t addr, uint32_t len, uint64_t off,
                                uint32_t op_flags, uint64_t user_data,
                                uint8_t sqe_flags, uint16_t ioprio,
                                uint16_t buf_index)
{
    struct cr_sqe *s;
    if (r->fd < 0) return -EBADF;
    if (user_data >= CORRAL_RESERVED_USER_DATA) return -EINVAL;
    if (r->legacy_pending) {
        cr_flush_provides(r);
        if (r->legacy_pending) return CORRAL_SQ_FULL;
    }
    s = cr_get_sqe(r);
    if (!s) return CORRAL_SQ_FULL;
    cr_fill(s, opcode, fd, addr, len, off, op_flags, user_data, sqe_flags,
            ioprio, buf_index, 0, 0);
    return 0;
}

int corral_ring_prep_simple(corral_ring *r, uint8_t opcode, int32_t fd,
                            uint64_t addr, uint32_t len, uint64_t off,
                            uint32_t op_flags, uint64_t user_data)
{
    return cr_prep_short(r, opcode, fd, addr, len, off, op_flags, user_data,
                         0, 0, 0);
}

int corral_ring_prep_buf(corral_ring *r, uint8_t opcode, int32_t fd,
                         char *buf, uint32_t len, uint64_t off,
                         uint32_t op_flags, uint64_t user_data)
{
    return cr_prep_short(r, opcode, fd, len ? (uint64_t)(uintptr_t)buf : 0,
                         len, off, op_flags, user_data, 0, 0, 0);
}

int corral_ring_prep_select(corral_ring *r, uint8_t opcode, int32_t fd,
                            uint32_t len, uint64_t off, uint32_t op_flags,
                            uint64_t user_data, uint16_t ioprio, uint16_t bgid)
{
    return cr_prep_short(r, opcode, fd, 0, len, off, op_flags, user_data,
                         CR_SQE_BUFFER_SELECT, ioprio, bgid);
}

/* ------------------------------------------------------------------------
 * Wakeup.
 *
 * Choice: an eventfd watched by a multishot IORING_OP_POLL_ADD (5.13).
 *  - write(2) of 8 bytes to an eventfd is async-signal-safe and thread-safe,
 *    so corral_ring_wakeup works from any thread and from a C-level signal
 *    handler. (Python's signal.set_wakeup_fd writes ONE byte, which an
 *    eventfd rejects with EINVAL: point set_wakeup_fd at a pipe or socket
 *    and POLL_ADD that instead.)
 *  - A poll touches no user memory, so closing the ring with it in flight
 *    is safe (a READ on the eventfd would need its 8-byte buffer to outlive
 *    the ring).
 *  - IORING_OP_MSG_RING would need a second ring per waking thread and is
 *    not usable from a signal handler.
 * With DEFER_TASKRUN the poll's wakeup is queued as local task work on the
 * ring, which wakes a task blocked in io_uring_enter(GETEVENTS) on it; the
 * resulting CQE satisfies min_complete, so the wait returns.
 * The poll CQE is consumed here (never reported to the caller); the eventfd
 * counter is reset with a non-blocking read. A write racing with that read
 * either is absorbed by it (the waiter is already awake) or makes the
 * counter non-zero again, which the multishot poll reports as a new CQE.
 * The kernel ends a multishot poll (CQE without IORING_CQE_F_MORE, see
 * io_uring_prep_poll_multishot(3)) e.g. on CQ overflow or cancellation; we
 * re-arm then. Kernels before 5.13 reject POLL_ADD_MULTI with EINVAL: we
 * fall back to one-shot polls, re-armed after every wakeup.
 * ------------------------------------------------------------------------ */
static int cr_arm_wake(corral_ring *r)
{
    struct cr_sqe *s = cr_get_sqe(r);
    if (!s) return CORRAL_SQ_FULL;
    cr_fill(s, CR_OP_POLL_ADD, r->wake_fd, 0,
            r->wake_multishot ? CR_POLL_ADD_MULTI : 0, 0, POLLIN,
            CORRAL_WAKE_USER_DATA, 0, 0, 0, 0, 0);
    r->wake_armed = 1;
    return 0;
}

static void cr_handle_wake_cqe(corral_ring *r, const struct cr_cqe *c)
{
    uint64_t value;
    if (c->res == -EINVAL && r->wake_multishot) {
        r->wake_multishot = 0;
    } else if (c->res > 0) {
        r->wakeups++;
        /* EAGAIN (already drained) is fine. */
        if (read(r->wake_fd, &value, sizeof value) < 0) { /* nothing */ }
    }
    if (!(c->flags & CR_CQE_F_MORE))
        r->wake_armed = 0;
}

int corral_ring_wakeup(corral_ring *r)
{
    uint64_t one = 1;
    int fd = r->wake_fd;
    if (fd < 0) return -EBADF;
    /* EAGAIN means the counter is about to overflow: a wakeup is pending
       anyway. */
    if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

/* ------------------------------------------------------------------------
 * Submission and completion.
 * ------------------------------------------------------------------------ */

/* Make filled SQEs visible to the kernel; return how many are pending. */
static inline unsigned cr_publish(corral_ring *r)
{
    STORE_REL(r->sq_ktail, r->sqe_tail);
    return r->sqe_tail - LOAD_ACQ(r->sq_khead);
}

static unsigned cr_reap(corral_ring *r, uint64_t *ud, int32_t *res,
                        uint32_t *fl, unsigned max)
{
    unsigned head = *r->cq_khead;
    unsigned tail = LOAD_ACQ(r->cq_ktail);
    unsigned n = 0;
    while (head != tail && n < max) {
        const struct cr_cqe *c = &r->cqes[head & r->cq_mask];
        if (c->user_data == CORRAL_WAKE_USER_DATA) {
            cr_handle_wake_cqe(r, c);
        } else if (c->user_data >= CORRAL_RESERVED_USER_DATA) {
            /* PROVIDE_BUFFERS / REMOVE_BUFFERS of a legacy group. A failed
               provide loses that buffer for the kernel; count it so the
               pool's statistics can show it. */
            if (c->res < 0 && c->res != -ENOENT) r->provide_errors++;
        } else {
            ud[n] = c->user_data;
            res[n] = c->res;
            fl[n] = c->flags;
            n++;
        }
        head++;
    }
    STORE_REL(r->cq_khead, head);
    r->completions += n;
    return n;
}

/* Classify an io_uring_enter result. Returns 0 for results that are part of
   normal operation (the caller then reaps), -errno for real errors.
   Sources: io_uring_enter(2) ERRORS; io_uring_setup(2) IORING_FEAT_NODROP.
   - ETIME: the EXT_ARG timeout expired.
   - EINTR: a signal arrived. We return to Python promptly so its signal
     handlers run; the SQEs the kernel did not consume stay queued.
   - EBUSY: with NODROP, overflowed CQEs could not all be flushed to the CQ
     ring (or, without NODROP, too many requests pending): the application
     must reap CQEs and retry -- which the next call does, since unconsumed
     SQEs stay in the SQ.
   - EAGAIN: the kernel could not allocate resources for a request; same
     remedy.
   - EBADR: CQEs were dropped (overflow allocation failed); reported once,
     counted in `dropped`. */
static inline long cr_classify(corral_ring *r, long ret)
{
    if (ret >= 0) return 0;
    switch (-ret) {
    case ETIME:  return 0;
    case EINTR:  r->interrupted++; return 0;
    case EBUSY:
    case EAGAIN: r->busy++; return 0;
    case EBADR:  r->dropped++; return 0;
    default:     return ret;
    }
}

static inline void cr_account_submitted(corral_ring *r, unsigned before)
{
    unsigned after = r->sqe_tail - LOAD_ACQ(r->sq_khead);
    if (before > after) r->submitted += before - after;
}

/* Flush the SQ without waiting. Returns SQEs consumed or -errno; EINTR,
   EBUSY and EAGAIN return 0 (reap, then submit again). */
int corral_ring_submit(corral_ring *r)
{
    unsigned pending;
    long ret;
    if (r->fd < 0) return -EBADF;
    if (r->legacy_head) cr_flush_provides(r);
    pending = cr_publish(r);
    if (!pending) return 0;
    ret = cr_enter(r->fd, pending, 0, 0, NULL, 0);
    r->enter_calls++;
    cr_account_submitted(r, pending);
    if (r->legacy_pending) cr_flush_provides(r);
    if (ret < 0) return (int)cr_classify(r, ret);
    return (int)ret;
}

/* One loop turn: flush the SQ and wait in a single io_uring_enter, then reap
   up to `max` CQEs into the arrays. Returns the number reaped, or -errno.
   timeout_ns < 0 waits without limit, 0 never blocks, > 0 waits at most that
   long for `wait_nr` completions (a wakeup counts). */
int corral_ring_submit_and_wait(corral_ring *r, unsigned wait_nr,
                                int64_t timeout_ns, uint64_t *ud, int32_t *res,
                                uint32_t *fl, unsigned max)
{
    struct cr_kernel_timespec ts;
    struct cr_getevents_arg arg;
    unsigned pending, sq_flags, flags = 0, n;
    int need_enter, rounds;
    long ret;

    if (r->fd < 0) return -EBADF;
    /* Without EXT_ARG (5.11) a wait could not be bounded; the Python layer
       refuses such kernels, this keeps C callers honest too. */
    if (timeout_ns > 0 && wait_nr > 0 && !(r->features & CR_FEAT_EXT_ARG))
        return -EOPNOTSUPP;

    /* Never block without the wakeup poll in flight: a wakeup written while
       it is disarmed would otherwise be missed until the next completion. */
    if (!r->wake_armed) {
        if (corral_ring_sq_space(r) == 0) {
            ret = corral_ring_submit(r);
            if (ret < 0) return (int)ret;
        }
        if (corral_ring_sq_space(r) > 0) cr_arm_wake(r);
    }
    if (r->legacy_head) cr_flush_provides(r);

    pending = cr_publish(r);
    sq_flags = LOAD_ACQ(r->sq_kflags);
    if (timeout_ns == 0) wait_nr = 0;
    need_enter = pending > 0;

    /* DEFER_TASKRUN (io_uring_setup(2)): completions are only posted when
       the submitter task enters with GETEVENTS, so a reap that skips the
       syscall may miss them. With TASKRUN_FLAG the kernel sets
       IORING_SQ_TASKRUN whenever such work is queued (also with
       COOP_TASKRUN), so we can skip the syscall when the flag is clear. */
    if (sq_flags & (CR_SQ_TASKRUN | CR_SQ_CQ_OVERFLOW))
        need_enter = 1, flags |= CR_ENTER_GETEVENTS;
    if ((r->setup_flags & CR_SETUP_DEFER_TASKRUN) &&
        !(r->setup_flags & CR_SETUP_TASKRUN_FLAG))
        need_enter = 1, flags |= CR_ENTER_GETEVENTS;
    if (wait_nr > 0 && corral_ring_cq_ready(r) < wait_nr)
        need_enter = 1, flags |= CR_ENTER_GETEVENTS;
    else
        wait_nr = 0;
    /* Entering to submit only (a non-blocking turn): ask for GETEVENTS
       too. The completions our own submissions trigger -- a send waking a
       receive pending on this ring -- are task work, which with
       DEFER_TASKRUN runs only in an enter with GETEVENTS; without it they
       would wait a whole loop turn (measured: a socketpair ping-pong next
       to a busy task took 4 enters per round trip instead of 2). With
       min_complete 0 the enter runs that work and returns at once
       (io_uring/io_uring.c: io_cqring_wait returns when min_events CQEs
       are ready). */
    if (need_enter) flags |= CR_ENTER_GETEVENTS;

    if (need_enter) {
        void *argp = NULL;
        size_t argsz = 0;
        if ((flags & CR_ENTER_GETEVENTS) && wait_nr > 0 &&
            (r->features & CR_FEAT_EXT_ARG)) {
            /* io_uring_enter(2) IORING_ENTER_EXT_ARG (5.11): the timeout
               is relative and bounds the wait for min_complete CQEs. */
            memset(&arg, 0, sizeof arg);
            arg.sigmask_sz = 64 / 8;   /* _NSIG / 8; no sigmask passed */
            if (timeout_ns > 0) {
                ts.tv_sec = timeout_ns / 1000000000;
                ts.tv_nsec = timeout_ns % 1000000000;
                arg.ts = (uint64_t)(uintptr_t)&ts;
            }
            argp = &arg;
            argsz = sizeof arg;
            flags |= CR_ENTER_EXT_ARG;
        }
        ret = cr_enter(r->fd, pending, wait_nr, flags, argp, argsz);
        r->enter_calls++;
        cr_account_submitted(r, pending);
        ret = cr_classify(r, ret);
        if (ret < 0) return (int)ret;
    }

    n = cr_reap(r, ud, res, fl, max);

    /* CQ overflow (io_uring_setup(2) IORING_FEAT_NODROP, 5.5): when the CQ
       ring is full the kernel keeps further CQEs on an internal list and
       sets IORING_SQ_CQ_OVERFLOW; an enter with GETEVENTS moves them into
       the ring once we have made room. Keep going while the caller has
       space, so a tiny CQ loses nothing and needs no extra loop turn. */
    for (rounds = 0; rounds < 64 && n < max; rounds++) {
        if (!(LOAD_ACQ(r->sq_kflags) & CR_SQ_CQ_OVERFLOW)) break;
        ret = cr_enter(r->fd, 0, 0, CR_ENTER_GETEVENTS, NULL, 0);
        r->enter_calls++;
        r->overflow_flushes++;
        ret = cr_classify(r, ret);
        /* The CQEs already copied out are consumed from the CQ: deliver
           them; an error that persists shows up on the next call. */
        if (ret < 0) return n ? (int)n : (int)ret;
        n += cr_reap(r, ud + n, res + n, fl + n, max - n);
    }
    return (int)n;
}

/* The loop turn's call with its result arrays bound once
   (corral_ring_set_results): three arguments instead of seven, so the
   per-turn Python->C call converts less. Same results as
   corral_ring_submit_and_wait; -EINVAL if no arrays were set. */
int corral_ring_set_results(corral_ring *r, uint64_t *ud, int32_t *res,
                            uint32_t *fl, unsigned max)
{
    r->out_ud = ud;
    r->out_res = res;
    r->out_fl = fl;
    r->out_max = max;
    return 0;
}

int corral_ring_turn(corral_ring *r, unsigned wait_nr, int64_t timeout_ns)
{
    if (!r->out_ud) return -EINVAL;
    return corral_ring_submit_and_wait(r, wait_nr, timeout_ns, r->out_ud,
                                       r->out_res, r->out_fl, r->out_max);
}

/* Reap without any syscall. Note: with DEFER_TASKRUN (or COOP_TASKRUN)
   completions may be waiting as task work and not yet be in the CQ; use
   corral_ring_submit_and_wait(r, 0, 0, ...) to run it. */
int corral_ring_reap(corral_ring *r, uint64_t *ud, int32_t *res,
                     uint32_t *fl, unsigned max)
{
    if (r->fd < 0) return -EBADF;
    return (int)cr_reap(r, ud, res, fl, max);
}

/* ------------------------------------------------------------------------
 * Setup.
 * ------------------------------------------------------------------------ */

/* Create the ring with exactly `flags` (+ CQSIZE when cq_entries != 0), map
   it and arm the wakeup poll. Returns 0 or -errno, leaving nothing open on
   failure. Fallback policy (which flags to try next) lives in Python.
   refuse_errno / refuse_flags simulate a refusing kernel for tests: the
   first makes setup fail with that errno (as the io_uring_disabled sysctl
   gives EPERM and a seccomp filter ENOSYS), the second answers EINVAL when
   any of those flags is requested (as an older kernel does for a flag it
   does not know: io_uring_setup(2) ERRORS). */
int corral_ring_setup(corral_ring *r, unsigned entries, unsigned cq_entries,
                      unsigned flags, int refuse_errno, unsigned refuse_flags)
{
    struct cr_params p;
    int fd, err;
    char *sq, *cq;

    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->wake_fd = -1;
    if (refuse_errno > 0) return -refuse_errno;
    if (flags & refuse_flags) return -EINVAL;

    memset(&p, 0, sizeof p);
    p.flags = flags;
    if (cq_entries) {
        p.flags |= CR_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
    }
    fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (fd < 0) return -errno;
    r->fd = fd;
    r->setup_flags = p.flags;
    r->features = p.features;
    r->sq_entries = p.sq_entries;
    r->cq_entries = p.cq_entries;

    r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct cr_cqe);
    if (p.features & CR_FEAT_SINGLE_MMAP) {
        /* 5.4+: both rings live in one mapping (io_uring_setup(2)). */
        if (r->cq_map_len > r->sq_map_len) r->sq_map_len = r->cq_map_len;
        r->cq_map_len = r->sq_map_len;
    }
    r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_POPULATE, fd, CR_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) { r->sq_map = NULL; goto fail; }
    if (p.features & CR_FEAT_SINGLE_MMAP) {
        r->cq_map = r->sq_map;
    } else {
        r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_POPULATE, fd, CR_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) { r->cq_map = NULL; goto fail; }
    }
    r->sqes_len = p.sq_entries * sizeof(struct cr_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, fd, CR_OFF_SQES);
    if (r->sqes == MAP_FAILED) { r->sqes = NULL; goto fail; }

    sq = r->sq_map;
    cq = r->cq_map;
    r->sq_khead = (unsigned *)(sq + p.sq_off.head);
    r->sq_ktail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_kflags = (unsigned *)(sq + p.sq_off.flags);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    r->cq_khead = (unsigned *)(cq + p.cq_off.head);
    r->cq_ktail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_koverflow = (unsigned *)(cq + p.cq_off.overflow);
    r->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct cr_cqe *)(cq + p.cq_off.cqes);
    r->sqe_tail = *r->sq_ktail;

    /* We always hand SQEs to the kernel in slot order, so the indirection
       array is the identity, written once. */
    for (unsigned i = 0; i < p.sq_entries; i++) r->sq_array[i] = i;

    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake_fd < 0) goto fail;
    r->wake_multishot = 1;
    cr_arm_wake(r);
    err = corral_ring_submit(r);
    if (err < 0) { errno = -err; goto fail; }
    return 0;

fail:
    err = errno ? errno : EINVAL;
    corral_ring_close(r);
    return -err;
}

/* IORING_REGISTER_PROBE (5.6; io_uring_register(2)): supported[op] = 1 for
   every opcode the kernel supports. Returns last_op + 1 (the number of
   opcodes the kernel knows) or -errno. */
int corral_ring_probe(corral_ring *r, uint8_t *supported, unsigned n)
{
    static struct cr_probe zero;
    struct cr_probe p = zero;
    long ret;
    unsigned i;
    if (r->fd < 0) return -EBADF;
    memset(supported, 0, n);
    ret = cr_register(r->fd, CR_REGISTER_PROBE, &p, 256);
    if (ret < 0) return (int)ret;
    for (i = 0; i < p.ops_len && i < 256; i++) {
        if ((p.ops[i].flags & CR_IO_URING_OP_SUPPORTED) && p.ops[i].op < n)
            supported[p.ops[i].op] = 1;
    }
    return p.last_op + 1;
}

int corral_ring_register(corral_ring *r, unsigned opcode, void *arg,
                         unsigned nr_args)
{
    if (r->fd < 0) return -EBADF;
    return (int)cr_register(r->fd, opcode, arg, nr_args);
}

/* A sparse fixed-file table of n slots (IORING_REGISTER_FILES2 with
   IORING_RSRC_REGISTER_SPARSE, 5.19; io_uring_register(2)). */
int corral_ring_register_files_sparse(corral_ring *r, unsigned n)
{
    struct cr_rsrc_register reg;
    if (r->fd < 0) return -EBADF;
    memset(&reg, 0, sizeof reg);
    reg.nr = n;
    reg.flags = CR_RSRC_REGISTER_SPARSE;
    return (int)cr_register(r->fd, CR_REGISTER_FILES2, &reg, sizeof reg);
}

/* Set slots [offset, offset+n) to fds (-1 clears a slot). Returns the
   number of slots updated or -errno. */
int corral_ring_update_files(corral_ring *r, unsigned offset, int32_t *fds,
                             unsigned n)
{
    struct cr_rsrc_update2 up;
    if (r->fd < 0) return -EBADF;
    memset(&up, 0, sizeof up);
    up.offset = offset;
    up.data = (uint64_t)(uintptr_t)fds;
    up.nr = n;
    return (int)cr_register(r->fd, CR_REGISTER_FILES_UPDATE2, &up, sizeof up);
}

/* ------------------------------------------------------------------------
 * Provided-buffer rings (IORING_REGISTER_PBUF_RING, 5.19;
 * io_uring_register_buf_ring(3)).
 *
 * Buffer id `bid` is slab[bid * buf_size : (bid + 1) * buf_size]. A request
 * with IOSQE_BUFFER_SELECT and buf_group = bgid takes a buffer from the
 * ring only when data is ready, so a pending receive holds none. Its CQE
 * carries IORING_CQE_F_BUFFER with the id in flags >> 16
 * (IORING_CQE_BUFFER_SHIFT); from then on the buffer belongs to the
 * application until it is added back. Check F_BUFFER on EVERY CQE of a
 * buffer-select request, errors included: the kernel may have picked a
 * buffer before the request failed or was cancelled, and that buffer is
 * then ours to recycle or it leaks. With the ring empty a request fails
 * with -ENOBUFS (a multishot receive terminates: no IORING_CQE_F_MORE).
 *
 * The kernel owns the ring head; we only see our tail. So we cannot detect
 * double adds: the caller must add each id at most once per lease, and the
 * ring has at least as many entries as the slab has buffers, so it can
 * never overfill.
 * ------------------------------------------------------------------------ */
int corral_bufring_register(corral_ring *r, corral_bufring *b, uint16_t bgid,
                            unsigned entries, void *slab, unsigned buf_size,
                            unsigned nbufs, int legacy)
{
    struct cr_buf_reg reg;
    long page = sysconf(_SC_PAGESIZE);
    long ret;
    memset(b, 0, sizeof *b);
    if (r->fd < 0) return -EBADF;
    /* entries: power of two, at most 32768 (io_uring_register_buf_ring(3)) */
    if (entries == 0 || entries > 32768 || (entries & (entries - 1)))
        return -EINVAL;
    if (nbufs == 0 || nbufs > entries || buf_size == 0) return -EINVAL;
    if (legacy) {
        b->pending = malloc(nbufs * sizeof *b->pending);
        if (!b->pending) return -ENOMEM;
        b->legacy = 1;
        b->owner = r;
        b->next = r->legacy_head;
        r->legacy_head = b;
        b->registered = 1;
        b->bgid = bgid;
        b->entries = entries;
        b->nbufs = nbufs;
        b->buf_size = buf_size;
        b->slab = slab;
        return 0;
    }
    b->ring_len = ((size_t)entries * sizeof(struct cr_buf) + page - 1) & ~(size_t)(page - 1);
    b->ring = mmap(NULL, b->ring_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b->ring == MAP_FAILED) { b->ring = NULL; return -errno; }
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)b->ring;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    ret = cr_register(r->fd, CR_REGISTER_PBUF_RING, &reg, 1);
    if (ret < 0) {
        munmap(b->ring, b->ring_len);
        b->ring = NULL;
        return (int)ret;
    }
    b->registered = 1;
    b->bgid = bgid;
    b->entries = entries;
    b->mask = entries - 1;
    b->nbufs = nbufs;
    b->buf_size = buf_size;
    b->slab = slab;
    b->tail = 0;
    return 0;
}

static inline void cr_buf_put(corral_bufring *b, unsigned bid)
{
    struct cr_buf *e = &b->ring[b->tail & b->mask];
    e->addr = (uint64_t)(uintptr_t)(b->slab + (size_t)bid * b->buf_size);
    e->len = b->buf_size;
    e->bid = (uint16_t)bid;
    /* e->resv untouched: for entry 0 it is the tail itself. */
    b->tail++;
}

/* The tail lives in the resv field of entry 0 (io_uring_buf_ring layout).
   Release ordering publishes the entries written before it; the kernel
   reads the tail with acquire. */
static inline void cr_buf_publish(corral_bufring *b)
{
    uint16_t *ktail = (uint16_t *)((char *)b->ring + 14);
    STORE_REL(ktail, b->tail);
}

/* ------------------------------------------------------------------------
 * Legacy provided buffers (IORING_OP_PROVIDE_BUFFERS, 5.7;
 * io_uring_prep_provide_buffers(3)): the fallback when the kernel lacks
 * PBUF_RING. Same contract for requests (buffer select by group, id in the
 * CQE, -ENOBUFS when empty), but each add is an SQE the kernel processes in
 * SQ order, so a provide queued before a receive is visible to it. An add
 * that finds the SQ full waits in `pending` and is flushed before the next
 * submission; it never fails. Successful provides post no CQE when the
 * kernel has IORING_FEAT_CQE_SKIP (5.17); otherwise their CQEs are consumed
 * in cr_reap.
 * ------------------------------------------------------------------------ */
static int cr_prep_provide(corral_bufring *b, unsigned bid)
{
    corral_ring *r = b->owner;
    struct cr_sqe *s = cr_get_sqe(r);
    if (!s) return CORRAL_SQ_FULL;
    cr_fill(s, CR_OP_PROVIDE_BUFFERS, 1 /* nbufs */,
            (uint64_t)(uintptr_t)(b->slab + (size_t)bid * b->buf_size),
            b->buf_size, bid, 0, CORRAL_PROVIDE_USER_DATA,
            (r->features & CR_FEAT_CQE_SKIP) ? CR_SQE_CQE_SKIP_SUCCESS : 0,
            0, (uint16_t)b->bgid, 0, 0);
    return 0;
}

static void cr_flush_provides(corral_ring *r)
{
    corral_bufring *b;
    for (b = r->legacy_head; b; b = b->next) {
        /* Oldest first. */
        while (b->npending > 0) {
            if (cr_prep_provide(b, b->pending[b->phead]) != 0) return;
            b->phead = (b->phead + 1) % b->nbufs;
            b->npending--;
            r->legacy_pending--;
        }
    }
}

static int cr_legacy_add(corral_bufring *b, unsigned bid)
{
    if (b->owner->fd < 0) return -EBADF;
    if (b->npending > 0 || cr_prep_provide(b, bid) != 0) {
        if (b->npending >= b->nbufs) return -EOVERFLOW;  /* double add */
        b->pending[(b->phead + b->npending++) % b->nbufs] = (uint16_t)bid;
        b->owner->legacy_pending++;
    }
    b->added++;
    return 0;
}

/* Give buffer `bid` to the kernel. Returns 0, -EINVAL for an id outside
   the slab, -EBADF after unregister. */
int corral_bufring_add(corral_bufring *b, unsigned bid)
{
    if (!b->registered) return -EBADF;
    if (bid >= b->nbufs) return -EINVAL;
    if (b->legacy) return cr_legacy_add(b, bid);
    cr_buf_put(b, bid);
    cr_buf_publish(b);
    b->added++;
    return 0;
}

int corral_bufring_add_range(corral_bufring *b, unsigned first, unsigned count)
{
    unsigned i;
    if (!b->registered) return -EBADF;
    if (first >= b->nbufs || count > b->nbufs - first) return -EINVAL;
    if (b->legacy) {
        for (i = 0; i < count; i++) {
            int rc = cr_legacy_add(b, first + i);
            if (rc < 0) return rc;
        }
        return 0;
    }
    for (i = 0; i < count; i++) cr_buf_put(b, first + i);
    cr_buf_publish(b);
    b->added += count;
    return 0;
}

/* Unregister and unmap the descriptor ring. The kernel pinned the ring's
   pages at registration, so unmapping our view is safe even if it still
   references them; the slab itself belongs to the caller and must outlive
   any request that may still write into it. Idempotent. */
int corral_bufring_unregister(corral_ring *r, corral_bufring *b)
{
    struct cr_buf_reg reg;
    long ret = 0;
    if (!b->registered) return 0;
    if (b->legacy) {
        corral_bufring **pp;
        free(b->pending);
        b->pending = NULL;
        b->registered = 0;
        if (r->fd < 0) return 0;
        r->legacy_pending -= b->npending;
        b->npending = 0;
        for (pp = &r->legacy_head; *pp; pp = &(*pp)->next) {
            if (*pp == b) { *pp = b->next; break; }
        }
        /* Take back what the kernel still holds (REMOVE_BUFFERS; its CQE is
           consumed in cr_reap). Best effort: with the SQ full the buffers
           simply stay with the kernel until the ring closes. */
        {
            struct cr_sqe *s = cr_get_sqe(r);
            if (s) cr_fill(s, CR_OP_REMOVE_BUFFERS, (int32_t)b->nbufs, 0, 0, 0, 0,
                           CORRAL_PROVIDE_USER_DATA, 0, 0, (uint16_t)b->bgid, 0, 0);
        }
        return 0;
    }
    if (r->fd >= 0) {
        memset(&reg, 0, sizeof reg);
        reg.bgid = (uint16_t)b->bgid;
        ret = cr_register(r->fd, CR_UNREGISTER_PBUF_RING, &reg, 1);
    }
    munmap(b->ring, b->ring_len);
    b->ring = NULL;
    b->registered = 0;
    return (int)(ret < 0 ? ret : 0);
}
