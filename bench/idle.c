/* What an idle runtime costs: CPU over 2 s after 1 s without work, and resident memory
 * beyond the shared segment pages (RssAnon + RssFile from /proc/<pid>/status). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "bench.h"

int bench_cpu_ticks(int pid, unsigned long long *ticks)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* Fields after the ")" of the command name: state is field 3; utime 14, stime 15. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
			 &st) != 2)
		return -EPROTO;
	*ticks = ut + st;
	return 0;
}

long bench_status_kib(int pid, const char *key)
{
	char path[64], line[256];
	long v = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t klen = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':')
			sscanf(line + klen + 1, "%ld", &v);
	fclose(f);
	return v;
}

int bench_idle(const struct bench_opts *o, double *cpu_pct, double *private_kib)
{
	struct chi_client_opts copts = { .config_path = o->config };
	struct chi_admin_stats st;
	struct chi_client *c;
	unsigned long long a, b;

	int rc = chi_client_connect(&copts, &c);
	if (rc == 0)
		rc = chi_admin_stats(c, &st);
	if (rc) {
		fprintf(stderr, "chimaera_bench idle: cannot reach the runtime: %s\n", strerror(-rc));
		return rc;
	}
	chi_client_disconnect(c);
	sleep(1);
	if ((rc = bench_cpu_ticks(st.pid, &a)) != 0) {
		fprintf(stderr, "chimaera_bench idle: runtime pid %d not readable here\n", st.pid);
		return rc;
	}
	sleep(2);
	if ((rc = bench_cpu_ticks(st.pid, &b)) != 0)
		return rc;
	*cpu_pct = 100.0 * (double)(b - a) / (2.0 * (double)sysconf(_SC_CLK_TCK));
	long anon = bench_status_kib(st.pid, "RssAnon"), file = bench_status_kib(st.pid, "RssFile");
	*private_kib = anon >= 0 && file >= 0 ? (double)(anon + file) : -1;
	return 0;
}
