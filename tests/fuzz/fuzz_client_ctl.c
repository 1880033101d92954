/* libFuzzer target: the CONTROL messages of a remote client's link (transport/client_ctl.c).
 * Any input is refused with -EPROTO or accepted; never a crash or a read out of bounds. What
 * is accepted holds: its counts fit its length, its directions are IN, OUT or INOUT, an
 * error carries no entries, and re-encoding what was decoded gives exactly its bytes (the
 * encoding is canonical). The input is tried as a request and as an answer.
 * Seeds: tests/fuzz/corpus_client_ctl (written by `test_client_ctl --corpus DIR`). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/client_ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chi_pool_id id;
	int rc = ctl_describe_decode(data, size, &id);
	check(rc == 0 || rc == -EPROTO);
	if (rc == 0) {
		uint8_t q[CTL_REQ_LEN];
		ctl_describe_encode(q, id);
		check(size == CTL_REQ_LEN && memcmp(q, data, size) == 0);
	}

	int32_t r;
	uint32_t count;
	rc = ctl_described_decode(data, size, &r, &id, NULL, 0, &count);
	check(rc == 0 || rc == -EPROTO);
	if (rc)
		return 0;
	check(r <= 0 && (r == 0 || count == 0));
	check(count <= size / (CTL_METHOD_LEN + CTL_FIELD_LEN));
	struct ctl_method_bulk *mb = count ? calloc(count, sizeof(*mb)) : NULL;
	struct chi_method_desc *md = count ? calloc(count, sizeof(*md)) : NULL;
	check(!count || (mb && md));
	uint32_t again;
	check(ctl_described_decode(data, size, &r, &id, mb, count, &again) == 0 && again == count);
	for (uint32_t i = 0; i < count; i++) {
		check(mb[i].num >= 1 && mb[i].num <= WIRE_MAX_BULK);
		for (uint32_t j = 0; j < mb[i].num; j++)
			check(mb[i].f[j].dir >= CHI_BULK_IN && mb[i].f[j].dir <= CHI_BULK_INOUT);
		md[i] = (struct chi_method_desc){ mb[i].id, "", NULL, 0, 0, NULL, mb[i].f, mb[i].num };
	}
	size_t len = ctl_described_size(md, count);
	check(len == size);
	uint8_t *out = malloc(len);
	check(out != NULL);
	check(ctl_described_encode(out, r, id, md, count) == size);
	check(memcmp(out, data, size) == 0);
	free(out);
	free(md);
	free(mb);
	return 0;
}
