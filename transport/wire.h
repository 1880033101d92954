/* The node-to-node wire format: frames that carry tasks, replies, the join handshake,
 * liveness and admin traffic between runtimes (and from remote clients). docs/wire.md has the
 * byte layout of every frame, the versioning rules and the list of checks.
 *
 * Pure functions over byte buffers: no sockets, no allocation, no runtime. The encoder builds
 * the frame's small fixed part in a caller-owned struct wire_out and returns an iovec list
 * that points at the task header copy, the parameters and the bulk data where they lie, so a
 * TCP sender writev()s them without a serialization copy. The decoder checks every length,
 * offset and count of a received frame against the buffer and the caller's limits before it
 * returns anything, and returns pointers into the receive buffer (no copies).
 *
 * What the decoder cannot check, because it has no runtime: that the pool and method exist
 * and that the bulk sections are the ones the method declares. The receiver does that as
 * rt_dispatch_task does for shared memory, with wire_task_check_bulk() for the bulk part
 * (docs/wire.md, "What the receiver checks").
 *
 * Errors: every function returns 0 or a negative code. A rejected frame gives a WIRE_E_*
 * code of its own (wire_strerror() says why in a static string; wire_errno() maps it to an
 * errno for a task's rc); misuse of the API (NULL pointers, bad limits) gives -EINVAL.
 *
 * Ownership: nothing here allocates or frees. Decoded pointers borrow the receive buffer;
 * iovecs borrow the caller's header, parameters and bulk buffers, which must stay put (and
 * the struct wire_out too) until the frame is sent. */
#ifndef CHI_TRANSPORT_WIRE_H
#define CHI_TRANSPORT_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <chimaera/module.h>
#include <chimaera/task.h>

#define WIRE_MAGIC	   0x57494843u /* "CHIW" little-endian */
#define WIRE_VERSION_MAJOR 1u
#define WIRE_VERSION_MINOR 0u
#define WIRE_HEADER_SIZE   48u
#define WIRE_ALIGN	   8u /* payloads are whole multiples of it; so is every frame */

/* Bulk sections in one TASK or REPLY, and the highest field index plus one: a method that
 * declares more bulk fields cannot be called across nodes. */
#define WIRE_MAX_BULK	     16u
#define WIRE_BULK_ENTRY_SIZE 24u
#define WIRE_TASK_FIXED	     8u	 /* TASK prologue before the bulk table */
#define WIRE_REPLY_FIXED     16u /* REPLY prologue before the bulk table */
#define WIRE_OPAQUE_FIXED    8u	 /* HELLO, AUTH, CONTROL: length word and reserved word */
#define WIRE_CLOSE_SIZE	     8u

/* Default limits (struct wire_limits). */
#define WIRE_DEFAULT_MAX_FRAME	 (WIRE_HEADER_SIZE + (64ull << 20))
#define WIRE_DEFAULT_MAX_PARAMS	 (1u << 20)
#define WIRE_DEFAULT_MAX_HELLO	 4096u	    /* HELLO and AUTH opaque bytes */
#define WIRE_DEFAULT_MAX_CONTROL (1u << 20) /* CONTROL opaque bytes */
/* The payload length is a u32 that is a multiple of WIRE_ALIGN. */
#define WIRE_MAX_FRAME_CEILING (WIRE_HEADER_SIZE + (uint64_t)(UINT32_MAX & ~(WIRE_ALIGN - 1)))

/* Handler results a REPLY may carry: 0 or -errno (Linux MAX_ERRNO). */
#define WIRE_RC_MIN (-4095)

/* Frame types. The registry (name, payload bounds, decoder) is one table in wire.c. */
enum wire_type {
	WIRE_HELLO = 1,	  /* join handshake: opaque, <= max_hello bytes */
	WIRE_AUTH = 2,	  /* join handshake: opaque, <= max_hello bytes */
	WIRE_CLOSE = 3,	  /* last frame before a hang-up: reason code */
	WIRE_PING = 4,	  /* liveness: empty; the cookie names it */
	WIRE_PONG = 5,	  /* answers a PING with its cookie */
	WIRE_CONTROL = 6, /* admin payload: opaque, <= max_control bytes */
	WIRE_TASK = 7,	  /* task header + params + bulk-in data */
	WIRE_REPLY = 8,	  /* rc + params (outputs) + bulk-out data */
	WIRE_TYPE_COUNT
};

/* CLOSE reasons. */
enum wire_close_reason {
	WIRE_CLOSE_NORMAL = 0,	  /* nothing wrong: the connection is no longer needed */
	WIRE_CLOSE_SHUTDOWN = 1,  /* the runtime is stopping */
	WIRE_CLOSE_PROTOCOL = 2,  /* a malformed frame; detail: its WIRE_E_* code */
	WIRE_CLOSE_VERSION = 3,	  /* detail: our version, major << 8 | minor */
	WIRE_CLOSE_AUTH = 4,	  /* the join handshake failed */
	WIRE_CLOSE_TIMEOUT = 5,	  /* no PONG or traffic in time */
	WIRE_CLOSE_RESOURCE = 6,  /* out of memory or connections */
	WIRE_CLOSE_DUPLICATE = 7, /* another connection for the same peer and worker won */
	WIRE_CLOSE_REASON_COUNT
};

/* Rejections, each its own code (wire_strerror() has the text). */
enum wire_error {
	WIRE_E_BASE = -2048,
	WIRE_E_ALIGN = WIRE_E_BASE,	/* the caller's buffer is not 8-byte aligned */
	WIRE_E_TRUNCATED = -2049,	/* fewer bytes than the frame announces */
	WIRE_E_MAGIC = -2050,		/* not a Chimaera frame */
	WIRE_E_VERSION = -2051,		/* another major version */
	WIRE_E_MINOR = -2052,		/* a newer minor version than ours */
	WIRE_E_TYPE = -2053,		/* unknown frame type */
	WIRE_E_FLAGS = -2054,		/* frame flags set that this version does not define */
	WIRE_E_HEADER_LEN = -2055,	/* header length is not WIRE_HEADER_SIZE */
	WIRE_E_RESERVED = -2056,	/* reserved frame header bytes are not zero */
	WIRE_E_PAYLOAD_ALIGN = -2057,	/* payload length not a multiple of WIRE_ALIGN */
	WIRE_E_FRAME_SIZE = -2058,	/* frame larger than the receiver's max_frame */
	WIRE_E_TYPE_SIZE = -2059,	/* payload length outside the bounds of its type */
	WIRE_E_BODY_RESERVED = -2060,	/* reserved bytes inside the payload are not zero */
	WIRE_E_PADDING = -2061,		/* alignment padding is not zero */
	WIRE_E_TRAILING = -2062,	/* bytes after the frame's last section */
	WIRE_E_BODY_SHORT = -2063,	/* payload ends inside its fixed part or bulk table */
	WIRE_E_OPAQUE_SIZE = -2064,	/* opaque length over the type's limit */
	WIRE_E_OPAQUE_LEN = -2065,	/* opaque length disagrees with the payload length */
	WIRE_E_CLOSE_REASON = -2066,	/* unknown CLOSE reason */
	WIRE_E_PARAMS_SIZE = -2067,	/* params_size over max_params */
	WIRE_E_PARAMS_RANGE = -2068,	/* parameters run past the payload */
	WIRE_E_PARAMS_MISMATCH = -2069, /* task header's params_size != the frame's */
	WIRE_E_TASK_STATE = -2070,	/* embedded task header: state is not SUBMITTED, rc not 0 */
	WIRE_E_TASK_FLAGS = -2071,	/* embedded task header: flags not 0 */
	WIRE_E_TASK_QUERY = -2072,	/* embedded task header: unknown query mode, reserved set */
	WIRE_E_TASK_RESERVED = -2073,	/* embedded task header: reserved0/reserved1 not 0 */
	WIRE_E_REPLY_RC = -2074,	/* REPLY rc is neither 0 nor -errno */
	WIRE_E_BULK_COUNT = -2075,	/* more bulk sections than max_bulk */
	WIRE_E_BULK_FIELD = -2076,	/* bulk field index >= max_bulk */
	WIRE_E_BULK_ORDER = -2077,	/* bulk field indices not strictly ascending */
	WIRE_E_BULK_DIR = -2078,	/* bulk direction unknown or wrong for the frame type */
	WIRE_E_BULK_CAPACITY = -2079,	/* bulk capacity (one, or OUT ones together) too large */
	WIRE_E_BULK_LENGTH = -2080,	/* bulk length breaks the rule of its direction */
	WIRE_E_BULK_OVERLAP = -2081,	/* section starts before the previous part ends */
	WIRE_E_BULK_RANGE = -2082,	/* section runs past the payload */
	WIRE_E_BULK_OFFSET = -2083,	/* section not at its canonical (aligned, packed) offset */
	WIRE_E_BULK_DECL = -2084,	/* sections are not the method's declared bulk fields */
	WIRE_E_BULK_DESC = -2085,	/* capacity differs from the descriptor in the params */
	WIRE_E_LAST = WIRE_E_BULK_DESC
};

/* What a receiver accepts; NULL anywhere below means wire_limits_default(). */
struct wire_limits {
	uint64_t max_frame;   /* header included; WIRE_HEADER_SIZE..WIRE_MAX_FRAME_CEILING */
	uint32_t max_params;  /* TASK and REPLY parameter bytes */
	uint32_t max_bulk;    /* sections per frame, and field indices below it; <= WIRE_MAX_BULK */
	uint32_t max_hello;   /* HELLO and AUTH opaque bytes */
	uint32_t max_control; /* CONTROL opaque bytes */
};

/* One bulk section of a TASK or REPLY. In a TASK, one per bulk field the method declares
 * (IN, OUT and INOUT), field ascending: capacity is the descriptor's length, and the data
 * travels for IN and INOUT (length == capacity) but not for OUT (length 0). In a REPLY, one
 * per OUT or INOUT field the handler filled: length <= capacity bytes of output. */
struct wire_bulk {
	uint16_t field;	   /* index in the method's chi_method_desc::bulk */
	uint8_t dir;	   /* enum chi_bulk_dir */
	uint64_t capacity; /* bytes the handler may read or write */
	uint64_t length;   /* bytes carried */
	const void *data;  /* decode: into the frame (NULL when length is 0); encode: source */
};

/* A frame, decoded or to encode. Header fields first, then the body of its type. */
struct wire_msg {
	uint8_t type;	       /* enum wire_type */
	uint8_t version_major; /* decode: the peer's (also on WIRE_E_VERSION); encode: ignored */
	uint8_t version_minor; /* decode: the frame's; encode: the minor agreed in HELLO */
	uint32_t src_node;
	uint16_t src_worker;
	uint16_t dst_worker;
	uint64_t cookie;     /* names the operation at the sender; a REPLY or PONG echoes it */
	uint32_t epoch;	     /* the sender's address-table epoch */
	uint64_t frame_size; /* decode: header + payload bytes; encode: ignored */
	union {
		struct {			    /* WIRE_TASK */
			const struct chi_task *hdr; /* decode: in the frame; encode: copied */
			const void *params;
			uint32_t params_size;
			uint32_t num_bulk;
			struct wire_bulk bulk[WIRE_MAX_BULK];
		} task;
		struct { /* WIRE_REPLY */
			int32_t rc;
			const void *params;
			uint32_t params_size;
			uint32_t num_bulk;
			struct wire_bulk bulk[WIRE_MAX_BULK];
		} reply;
		struct { /* WIRE_HELLO, WIRE_AUTH, WIRE_CONTROL */
			const void *data;
			uint32_t len;
		} opaque;
		struct {		 /* WIRE_CLOSE */
			uint32_t reason; /* enum wire_close_reason */
			int32_t detail;
		} close;
	};
};

/* The frame header, the TASK/REPLY prologue, the bulk table and the task header copy. */
#define WIRE_OUT_BUF                                                                               \
	(WIRE_HEADER_SIZE + WIRE_TASK_FIXED + WIRE_MAX_BULK * WIRE_BULK_ENTRY_SIZE +               \
	 CHI_TASK_HEADER_SIZE)
/* Fixed part, parameters, then padding and data per section, and the final padding. */
#define WIRE_MAX_IOV (3 + 2 * (int)WIRE_MAX_BULK)

/* An encoded frame: send iov[0..iovcnt) in order, size bytes in all. iov[0] points into buf. */
struct wire_out {
	_Alignas(8) uint8_t buf[WIRE_OUT_BUF];
	struct iovec iov[WIRE_MAX_IOV];
	int iovcnt;
	uint64_t size;
};

/* Fill @lim with the WIRE_DEFAULT_* limits. */
void wire_limits_default(struct wire_limits *lim);

/* How many bytes the frame at the front of @buf needs, from the @len bytes received so far:
 * WIRE_HEADER_SIZE while the header is incomplete, then the whole frame. Whatever part of the
 * header is present is checked first (magic after 4 bytes, version after 6, the announced
 * size after 16), so a peer announcing a frame over @lim->max_frame, or speaking something
 * else entirely, is refused before anything is allocated for it.
 * @return 0 with *need set; WIRE_E_MAGIC, _VERSION, _MINOR, _TYPE, _FLAGS, _HEADER_LEN,
 *         _RESERVED, _PAYLOAD_ALIGN, _FRAME_SIZE, _TYPE_SIZE; -EINVAL (bad @lim, NULL). */
int wire_frame_need(const void *buf, size_t len, const struct wire_limits *lim, uint64_t *need);

/* Decode the frame at the front of @buf (@len bytes; those past the frame are the next
 * frame's and are not read). @buf must be 8-byte aligned: frames are multiples of 8 bytes,
 * so back-to-back frames in an aligned receive buffer all are. Nothing in @out is valid
 * unless 0 is returned, except version_major/version_minor after WIRE_E_VERSION or
 * WIRE_E_MINOR. @return 0, a WIRE_E_* code, or -EINVAL (NULL, bad @lim). */
int wire_decode(const void *buf, size_t len, const struct wire_limits *lim, struct wire_msg *out);

/* Encode @msg into @out (iovecs to send, in order). Checks what a receiver with limits @lim
 * would, so an accepted message is never refused by such a peer: a task a local client made
 * malformed fails here, with a code wire_errno() turns into its rc, instead of closing the
 * connection it would have gone out on. For a TASK, the header at msg->task.hdr is copied
 * (pass the snapshot dispatch validated) with its node-local words reset: state becomes
 * CHI_TASK_SUBMITTED (waiter, taken and tag bits dropped), rc, reserved0, reserved1 and
 * query.reserved 0; params_size must equal msg->task.params_size.
 * @return 0, a WIRE_E_* code, or -EINVAL (NULL pointers with non-zero lengths, bad @lim). */
int wire_encode(struct wire_out *out, const struct wire_msg *msg, const struct wire_limits *lim);

/* For the receiver of a TASK, once it has found the method (as rt_dispatch_task does) and
 * checked params_size >= min_params_size: the frame's bulk sections must be exactly the
 * method's declared fields @fields[0..@n), in order, with the same directions, and each
 * section's capacity must equal the length of the struct chi_bulk the field names in the
 * params. The descriptor's offset is the origin's and means nothing here: field k's bytes are
 * msg->task.bulk[k].data. A failure is the task's fault, not the connection's: reply -EFAULT.
 * @return 0, WIRE_E_BULK_DECL, WIRE_E_BULK_DESC, WIRE_E_BULK_COUNT (@n > WIRE_MAX_BULK),
 *         -EINVAL (not a TASK, NULL). */
int wire_task_check_bulk(const struct wire_msg *msg, const struct chi_bulk_field *fields,
			 uint32_t n);

/* For the origin of a task, when its REPLY comes: the reply's params are as long as those
 * sent (@sent_size), and each bulk section is an OUT or INOUT field of @fields[0..@n) whose
 * capacity equals the descriptor length in the params the origin sent (@sent_params, its own
 * copy: never the reply's). The origin still checks that the destination range lies in its
 * client's memory, as dispatch does.
 * @return 0, WIRE_E_PARAMS_MISMATCH, WIRE_E_BULK_DECL, WIRE_E_BULK_DESC, -EINVAL. */
int wire_reply_check_bulk(const struct wire_msg *msg, const struct chi_bulk_field *fields,
			  uint32_t n, const void *sent_params, uint32_t sent_size);

/* A static, human-readable reason for a WIRE_E_* code (or a few plain -errno values the
 * functions above return). Never NULL. */
const char *wire_strerror(int code);

/* The errno a WIRE_E_* code maps to, negative: -EPROTO for malformed frames,
 * -EPROTONOSUPPORT for version mismatches, -EMSGSIZE for frames or parts over the limits,
 * -EFAULT for bulk sections that disagree with the method; other values pass unchanged. */
int wire_errno(int code);

/* "TASK", "REPLY", ... or "unknown". */
const char *wire_type_name(unsigned type);

/* "shutdown", "protocol error", ... or "unknown reason". */
const char *wire_close_reason_name(unsigned reason);

#endif
