/* libFuzzer target: the YAML config decoder and the pool query grammar must reject any
 * input with an error, never crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/pool_query.h>

#include "common/config.h"
#include "common/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg;
	char err[1024];

	log_threshold = -1; /* silence: warnings are expected on junk */
	config_defaults(&cfg);
	if (config_load_string(&cfg, "fuzz.yaml", (const char *)data, size, err,
				   sizeof(err)) != 0 && err[0] == '\0')
		abort(); /* an error must say why */
	config_fini(&cfg);

	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct chi_pool_query q;
	if (chi_pool_query_parse(s, &q) == 0) {
		char buf[128];
		struct chi_pool_query back;
		/* What parses must format and parse back to the same query. */
		if (chi_pool_query_format(&q, buf, sizeof(buf)) <= 0 ||
		    chi_pool_query_parse(buf, &back) != 0 || memcmp(&q, &back, sizeof(q)) != 0)
			abort();
	}
	free(s);
	return 0;
}
