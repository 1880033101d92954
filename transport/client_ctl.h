/* The CONTROL messages of a remote client's link (docs/wire.md, "Remote clients"): the
 * client asks a runtime which bulk fields a pool's methods declare (it must send exactly
 * those with a TASK, and only the runtime has the modules' method tables), and the runtime
 * answers. Pure functions over the CONTROL data, as wire.c is over frames: no sockets, no
 * allocation, no runtime. Little-endian throughout.
 *
 *   DESCRIBE  (client -> runtime, CTL_REQ_LEN bytes): op 1, 0, pool major, pool minor
 *   DESCRIBED (runtime -> client): op 0x81, rc, pool major, pool minor, count, 0; then count
 *             method entries: id, num_bulk; then num_bulk fields: offset, dir,
 *             out_len_offset, 0.
 *
 * The decoders check every length, count, direction and reserved word and refuse anything
 * else with -EPROTO, so that the encoding is canonical: what decodes re-encodes to the same
 * bytes (tests/fuzz/fuzz_client_ctl.c). */
#ifndef CHI_TRANSPORT_CLIENT_CTL_H
#define CHI_TRANSPORT_CLIENT_CTL_H

#include <stddef.h>
#include <stdint.h>

#include <chimaera/module.h>
#include <chimaera/task.h>

#include "wire.h"

#define CTL_DESCRIBE	0x01u
#define CTL_DESCRIBED	0x81u
#define CTL_REQ_LEN	16u
#define CTL_REPLY_FIXED 24u
#define CTL_METHOD_LEN	8u
#define CTL_FIELD_LEN	16u

/* One method's bulk fields, as a DESCRIBED answer lists them. */
struct ctl_method_bulk {
	uint32_t id;
	uint32_t num; /* 1..WIRE_MAX_BULK */
	struct chi_bulk_field f[WIRE_MAX_BULK];
};

/* The DESCRIBE request for @pool into @out. */
void ctl_describe_encode(uint8_t out[CTL_REQ_LEN], struct chi_pool_id pool);

/* @return 0 with *@pool set, or -EPROTO (not a DESCRIBE request of the right length). */
int ctl_describe_decode(const void *data, size_t len, struct chi_pool_id *pool);

/* Bytes of the answer that lists, of @methods[0..@n), those with 1..WIRE_MAX_BULK bulk fields
 * (the others have nothing to say). */
size_t ctl_described_size(const struct chi_method_desc *methods, uint32_t n);

/* Write that answer into @out (ctl_described_size() bytes) with @rc (0, or -errno: then no
 * methods, pass @n 0). @return the bytes written. */
size_t ctl_described_encode(uint8_t *out, int32_t rc, struct chi_pool_id pool,
			    const struct chi_method_desc *methods, uint32_t n);

/* Check a whole DESCRIBED answer and copy up to @max of its entries into @out (NULL with
 * @max 0: only check and count). *@count is the number of entries it holds.
 * @return 0; -EPROTO (malformed: wrong op, a reserved word set, an rc that is neither 0 nor
 *         -errno, entries with an rc, a count or field count out of range, a direction
 *         other than IN, OUT or INOUT, bytes missing or left over). */
int ctl_described_decode(const void *data, size_t len, int32_t *rc, struct chi_pool_id *pool,
			 struct ctl_method_bulk *out, uint32_t max, uint32_t *count);

#endif
