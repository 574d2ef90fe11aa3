/* The io_uring kernel ABI as corral uses it: our own copy of the structures
 * and constants (prefix cr_ / CR_), so the build needs no system io_uring
 * header, cross-checked against <linux/io_uring.h> when the system has one.
 * Values are kernel ABI and never change; newer kernels only add.
 * Included by _uring_ring.c; see corral/_io/_uring_build.py. */
#ifndef CORRAL_URING_ABI_H
#define CORRAL_URING_ABI_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------
 * Kernel ABI, our own copy.
 *
 * The syscall numbers 425/426/427 are shared by every architecture that
 * uses the generic table (io_uring arrived in 5.1, after the tables were
 * unified), except alpha, whose libc headers define the names.
 * ------------------------------------------------------------------------ */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

struct cr_sqe {
    uint8_t  opcode;
    uint8_t  flags;       /* IOSQE_* */
    uint16_t ioprio;      /* also: recv/send/accept flags (MULTISHOT...) */
    int32_t  fd;
    uint64_t off;         /* also: addr2, cmd_op */
    uint64_t addr;        /* also: splice_off_in */
    uint32_t len;
    uint32_t op_flags;    /* rw_flags, msg_flags, poll32_events,
                             timeout_flags, accept_flags, cancel_flags,
                             open_flags, statx_flags, splice_flags, ... */
    uint64_t user_data;
    uint16_t buf_index;   /* also: buf_group */
    uint16_t personality;
    uint32_t file_index;  /* also: splice_fd_in, addr_len (low 16 bits) */
    uint64_t addr3;
    uint64_t pad2;
};

struct cr_cqe {
    uint64_t user_data;
    int32_t  res;
    uint32_t flags;
};

struct cr_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};

struct cr_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};

struct cr_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle;
    uint32_t features, wq_fd, resv[3];
    struct cr_sqring_offsets sq_off;
    struct cr_cqring_offsets cq_off;
};

struct cr_kernel_timespec {
    int64_t   tv_sec;
    long long tv_nsec;
};

struct cr_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t pad;          /* min_wait_usec since 6.12; 0 = unused */
    uint64_t ts;
};

struct cr_probe_op {
    uint8_t  op, resv;
    uint16_t flags;
    uint32_t resv2;
};

struct cr_probe {
    uint8_t  last_op, ops_len;
    uint16_t resv;
    uint32_t resv2[3];
    struct cr_probe_op ops[256];
};

struct cr_buf {
    uint64_t addr;
    uint32_t len;
    uint16_t bid;
    uint16_t resv;         /* entry 0's resv IS the ring tail: never write */
};

struct cr_buf_reg {
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid;
    uint16_t flags;
    uint64_t resv[3];
};

struct cr_rsrc_register {
    uint32_t nr, flags;
    uint64_t resv2, data, tags;
};

struct cr_rsrc_update2 {
    uint32_t offset, resv;
    uint64_t data, tags;
    uint32_t nr, resv2;
};

#define CR_OP_POLL_ADD            6
#define CR_OP_ASYNC_CANCEL        14
#define CR_OP_PROVIDE_BUFFERS     31
#define CR_OP_REMOVE_BUFFERS      32
#define CR_SQE_BUFFER_SELECT      (1U << 5)
#define CR_SQE_CQE_SKIP_SUCCESS   (1U << 6)
#define CR_FEAT_CQE_SKIP          (1U << 11)

#define CR_SETUP_CQSIZE           (1U << 3)
#define CR_SETUP_DEFER_TASKRUN    (1U << 13)
#define CR_SETUP_TASKRUN_FLAG     (1U << 9)

#define CR_FEAT_SINGLE_MMAP       (1U << 0)
#define CR_FEAT_EXT_ARG           (1U << 8)

#define CR_ENTER_GETEVENTS        (1U << 0)
#define CR_ENTER_EXT_ARG          (1U << 3)

#define CR_SQ_CQ_OVERFLOW         (1U << 1)
#define CR_SQ_TASKRUN             (1U << 2)

#define CR_CQE_F_MORE             (1U << 1)

#define CR_POLL_ADD_MULTI         (1U << 0)

#define CR_OFF_SQ_RING            0ULL
#define CR_OFF_CQ_RING            0x8000000ULL
#define CR_OFF_SQES               0x10000000ULL

#define CR_REGISTER_FILES         2
#define CR_REGISTER_PROBE         8
#define CR_REGISTER_FILES2        13
#define CR_REGISTER_FILES_UPDATE2 14
#define CR_REGISTER_PBUF_RING     22
#define CR_UNREGISTER_PBUF_RING   23
#define CR_RSRC_REGISTER_SPARSE   (1U << 0)
#define CR_IO_URING_OP_SUPPORTED  (1U << 0)

/* ------------------------------------------------------------------------
 * Cross-check against the system uapi header when there is one.
 * ------------------------------------------------------------------------ */
#if defined(__has_include)
#  if __has_include(<linux/io_uring.h>)
#    include <linux/io_uring.h>
#    define CR_HAVE_UAPI 1
#  endif
#endif

#define CR_SAME_LAYOUT(ours, theirs, field) \
    _Static_assert(offsetof(struct ours, field) == offsetof(struct theirs, field), \
                   #ours "." #field " differs from the kernel header")

#ifdef CR_HAVE_UAPI
_Static_assert(sizeof(struct cr_sqe) == sizeof(struct io_uring_sqe), "sqe size");
_Static_assert(sizeof(struct cr_sqe) == 64, "sqe is 64 bytes");
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, ioprio);
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, fd);
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, off);
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, addr);
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, len);
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, user_data);
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, buf_index);
CR_SAME_LAYOUT(cr_sqe, io_uring_sqe, personality);
_Static_assert(sizeof(struct cr_cqe) == 16, "cqe is 16 bytes");
CR_SAME_LAYOUT(cr_cqe, io_uring_cqe, res);
CR_SAME_LAYOUT(cr_cqe, io_uring_cqe, flags);
_Static_assert(sizeof(struct cr_params) == sizeof(struct io_uring_params), "params");
CR_SAME_LAYOUT(cr_params, io_uring_params, features);
CR_SAME_LAYOUT(cr_params, io_uring_params, sq_off);
CR_SAME_LAYOUT(cr_params, io_uring_params, cq_off);
_Static_assert(CR_OP_POLL_ADD == IORING_OP_POLL_ADD, "POLL_ADD");
_Static_assert(CR_OP_ASYNC_CANCEL == IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL");
_Static_assert(CR_ENTER_GETEVENTS == IORING_ENTER_GETEVENTS, "GETEVENTS");
_Static_assert(CR_SQE_BUFFER_SELECT == IOSQE_BUFFER_SELECT, "BUFFER_SELECT");
_Static_assert(CR_OFF_SQES == IORING_OFF_SQES, "OFF_SQES");
_Static_assert(CR_OFF_CQ_RING == IORING_OFF_CQ_RING, "OFF_CQ_RING");
#  ifdef IORING_ENTER_EXT_ARG
_Static_assert(CR_ENTER_EXT_ARG == IORING_ENTER_EXT_ARG, "EXT_ARG");
_Static_assert(CR_FEAT_EXT_ARG == IORING_FEAT_EXT_ARG, "FEAT_EXT_ARG");
_Static_assert(sizeof(struct cr_getevents_arg) == sizeof(struct io_uring_getevents_arg), "arg");
#  endif
#  ifdef IORING_SETUP_TASKRUN_FLAG
_Static_assert(CR_SETUP_TASKRUN_FLAG == IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG");
_Static_assert(CR_SQ_TASKRUN == IORING_SQ_TASKRUN, "SQ_TASKRUN");
#  endif
#  ifdef IORING_SETUP_DEFER_TASKRUN
/* A header that knows DEFER_TASKRUN (6.1) also has the 5.19 PBUF_RING ABI. */
_Static_assert(CR_SETUP_DEFER_TASKRUN == IORING_SETUP_DEFER_TASKRUN, "DEFER");
_Static_assert(CR_REGISTER_PBUF_RING == IORING_REGISTER_PBUF_RING, "PBUF_RING");
_Static_assert(CR_UNREGISTER_PBUF_RING == IORING_UNREGISTER_PBUF_RING, "PBUF_RING");
_Static_assert(sizeof(struct cr_buf) == sizeof(struct io_uring_buf), "buf");
_Static_assert(sizeof(struct cr_buf_reg) == sizeof(struct io_uring_buf_reg), "buf_reg");
_Static_assert(sizeof(struct cr_rsrc_update2) == sizeof(struct io_uring_rsrc_update2), "upd2");
_Static_assert(CR_REGISTER_FILES_UPDATE2 == IORING_REGISTER_FILES_UPDATE2, "UPDATE2");
_Static_assert(CR_REGISTER_PROBE == IORING_REGISTER_PROBE, "PROBE");
#  endif
#endif

#endif /* CORRAL_URING_ABI_H */
