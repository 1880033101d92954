/* An out-of-tree application of the bundled modules' client libraries: it links
 * libchimaera_kvs_client and libchimaera_bdev_client (chimaera::kvs_client and
 * chimaera::bdev_client, or pkg-config chimaera-kvs chimaera-bdev) besides libchimaera_client.
 * Stores its argument in a kvs pool and on a RAM bdev, reads both back and prints them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <chimaera/bdev.h>
#include <chimaera/chimaera.h>
#include <chimaera/kvs.h>

/* Both pools are made here if they do not exist yet. @return 0 or -errno (why says more). */
static int make_pools(struct chi_client *c, struct chi_pool_id *kvs, struct chi_pool_id *bdev,
		      char *why, size_t why_len)
{
	static const char *ram[] = { "bdev_type", "ram", "capacity", "1MB" };

	int rc = chi_admin_get_or_create_pool(c, "kvs", "stash_kvs", NULL, 2, NULL, 0, kvs, why,
					      why_len);
	if (rc)
		return rc;
	return chi_admin_get_or_create_pool(c, "bdev", "ram::stash", NULL, 1, ram, 2, bdev, why,
					    why_len);
}

/* Put @text under a key and get it back into @out. */
static int kvs_round_trip(struct chi_client *c, struct chi_pool_id pool, const char *text,
			  char *out, uint64_t cap)
{
	static const char key[] = "stash";

	int rc = chi_kvs_put(c, pool, key, sizeof(key), text, strlen(text) + 1);
	if (rc == 0)
		rc = chi_kvs_get(c, pool, key, sizeof(key), out, cap, NULL);
	return rc;
}

/* Write @text to a fresh extent and read it back into @out; the extent is freed again. */
static int bdev_round_trip(struct chi_client *c, struct chi_pool_id pool, const char *text,
			   char *out, uint64_t cap)
{
	uint64_t off, len = strlen(text) + 1;

	if (len > cap)
		return -ENOSPC;
	int rc = chi_bdev_allocate(c, pool, 0, len, &off, NULL);
	if (rc)
		return rc;
	rc = chi_bdev_write(c, pool, 0, off, text, len);
	if (rc == 0)
		rc = chi_bdev_read(c, pool, 0, off, out, len);
	int frc = chi_bdev_free(c, pool, 0, off, len);
	return rc ? rc : frc;
}

int main(int argc, char **argv)
{
	const char *text = argc > 1 ? argv[1] : "something";
	struct chi_pool_id kvs, bdev;
	struct chi_client *c;
	char why[256] = "", from_kvs[128], from_bdev[128];

	int rc = chi_client_connect(NULL, &c);
	if (rc) {
		fprintf(stderr, "stash: cannot attach: %s\n", strerror(-rc));
		return 1;
	}
	rc = make_pools(c, &kvs, &bdev, why, sizeof(why));
	if (rc) {
		fprintf(stderr, "stash: pools: %s\n", why[0] ? why : strerror(-rc));
		goto err_disconnect;
	}
	rc = kvs_round_trip(c, kvs, text, from_kvs, sizeof(from_kvs));
	if (rc) {
		fprintf(stderr, "stash: kvs: %s\n", strerror(-rc));
		goto err_disconnect;
	}
	rc = bdev_round_trip(c, bdev, text, from_bdev, sizeof(from_bdev));
	if (rc) {
		fprintf(stderr, "stash: bdev: %s\n", strerror(-rc));
		goto err_disconnect;
	}
	printf("kvs: %s, bdev: %s\n", from_kvs, from_bdev);
	chi_client_disconnect(c);
	return 0;

err_disconnect:
	chi_client_disconnect(c);
	return 1;
}
