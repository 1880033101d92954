/* hello: attach to the local runtime, echo a greeting through it, print the round trip.
 * Build: see docs/client.md. Run with a runtime started by `chimaera runtime start`. */
#include <stdio.h>
#include <string.h>

#include <chimaera/chimaera.h>

int main(void)
{
	struct chi_client *client;
	struct chi_future fut;
	const char msg[] = "hello, chimaera";
	uint32_t len;

	int rc = chi_client_connect(NULL, &client);
	if (rc) {
		fprintf(stderr, "hello: cannot attach to the runtime: %s\n", strerror(-rc));
		return 1;
	}
	rc = chi_admin_echo_async(client, msg, sizeof(msg), &fut);
	if (rc == 0)
		rc = chi_wait(&fut);
	if (rc) {
		fprintf(stderr, "hello: echo failed: %s\n", strerror(-rc));
		chi_client_disconnect(client);
		return 1;
	}
	const char *out = chi_admin_echo_output(&fut, &len);
	printf("runtime echoed %u bytes: \"%s\"\n", len, out);
	chi_task_free(client, fut.task);
	chi_client_disconnect(client);
	return 0;
}
