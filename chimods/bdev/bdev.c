/* bdev: block storage per container, in RAM or in a file, with a block bitmap allocator.
 *
 * File layout: [0, 4 KiB) header, then the bitmap (one bit per block, padded to a block),
 * then the data area; offsets given to clients are data-area offsets. The bitmap is written
 * through on every Allocate/Free, so a restart finds the same allocations.
 *
 * File I/O never runs on a worker: Read and Write are yielding methods that hand the
 * pread/pwrite to the container's I/O thread and park until it is done (chi_park); the
 * worker serves other tasks meanwhile. A RAM device copies in place. */
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chimaera/bdev.h>
#include <chimaera/module.h>

#define HDR_SIZE 4096u
#define FILE_MAGIC 0x3156454449484343ull /* "CCHIDEV1" */

struct file_hdr {
	uint64_t magic;
	uint64_t capacity;
	uint64_t block_size;
};

/* One pread/pwrite for the I/O thread. */
struct io_job {
	int write;
	unsigned char *buf;
	uint64_t len;
	off_t at;
	struct chi_park *park;
	struct io_job *next;
};

struct bdev_state {
	int fd;		 /* file type; -1 for ram */
	pthread_t io_thread;
	int io_running;
	pthread_mutex_t io_lock;
	pthread_cond_t io_cond;
	struct io_job *io_head, **io_tail;
	int io_stop;
	unsigned char *ram;
	unsigned char *bitmap;
	uint64_t capacity;
	uint64_t block_size;
	uint64_t blocks;
	uint64_t bitmap_bytes;
	uint64_t data_off; /* file offset of the data area */
	uint64_t free_blocks;
	uint64_t hint;
	struct chi_bdev_stats st;
};

static int bit(const struct bdev_state *s, uint64_t b)
{
	return (s->bitmap[b / 8] >> (b % 8)) & 1;
}

static void set_bits(struct bdev_state *s, uint64_t first, uint64_t n, int on)
{
	for (uint64_t b = first; b < first + n; b++) {
		if (on)
			s->bitmap[b / 8] |= (unsigned char)(1u << (b % 8));
		else
			s->bitmap[b / 8] &= (unsigned char)~(1u << (b % 8));
	}
	s->free_blocks = on ? s->free_blocks - n : s->free_blocks + n;
}

/* The pool name comes from a client: it must not choose where the runtime writes. A file
 * bdev's file is a plain name inside the runtime's data directory, never a path or a dot
 * file (which would also hide it from a listing). */
static int check_file_name(struct chi_container *c, const char *name)
{
	if (name[0] && name[0] != '.' && !strchr(name, '/'))
		return 0;
	chi_container_error(c,
			    "pool name '%s' is not a plain file name (empty, starts with '.' or "
			    "contains '/'); a file bdev lives in runtime.data_dir under its pool "
			    "name",
			    name);
	return -EINVAL;
}

/* @len bytes at @at, all or an error. */
static int write_at(int fd, const void *buf, size_t len, off_t at)
{
	ssize_t n = pwrite(fd, buf, len, at);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* Open (creating it 0600 if missing) @file in the data directory, relative to a descriptor of
 * the directory and without following a symlink, so that nothing planted there can redirect
 * the writes; then refuse anything but a regular file with one name. */
static int open_in_data_dir(struct chi_container *c, struct bdev_state *s, const char *file)
{
	const char *dir = chi_runtime_data_dir();
	struct stat st;
	int err;

	if (!dir) {
		chi_container_error(c, "the runtime has no data directory for file bdevs");
		return -ENOENT;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		err = errno;
		chi_container_error(c, "cannot open the data directory %s: %s", dir, strerror(err));
		return -err;
	}
	s->fd = openat(dfd, file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	err = errno; /* before close() can change it */
	close(dfd);
	if (s->fd < 0) {
		if (err == ELOOP)
			chi_container_error(c, "%s/%s is a symbolic link: refused", dir, file);
		else
			chi_container_error(c, "cannot open %s/%s: %s", dir, file, strerror(err));
		return -err;
	}
	if (fstat(s->fd, &st) != 0) {
		err = errno;
		chi_container_error(c, "cannot stat %s/%s: %s", dir, file, strerror(err));
		return -err;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		/* A FIFO or device would hang or hit hardware; a second hard link is a name
		 * outside our control for the same data. */
		chi_container_error(c, "%s/%s is %s: refused", dir, file,
				    S_ISREG(st.st_mode) ? "a file with other hard links" :
							  "not a regular file");
		return -EINVAL;
	}
	return 0;
}

static int open_file(struct chi_container *c, struct bdev_state *s, const char *file)
{
	struct file_hdr h;
	int rc = open_in_data_dir(c, s, file);
	if (rc)
		return rc;
	ssize_t n = pread(s->fd, &h, sizeof(h), 0);
	if (n < 0) {
		rc = -errno;
		chi_container_error(c, "cannot read %s: %s", file, strerror(-rc));
		return rc;
	}
	if (n == (ssize_t)sizeof(h) && h.magic == FILE_MAGIC) {
		/* An existing device: its geometry must match the compose entry. */
		if (h.capacity != s->capacity || h.block_size != s->block_size) {
			chi_container_error(c,
					    "%s holds a device of %llu bytes in %llu-byte blocks; "
					    "asked for %llu bytes in %llu-byte blocks",
					    file, (unsigned long long)h.capacity,
					    (unsigned long long)h.block_size,
					    (unsigned long long)s->capacity,
					    (unsigned long long)s->block_size);
			return -EINVAL;
		}
		n = pread(s->fd, s->bitmap, s->bitmap_bytes, HDR_SIZE);
		if (n != (ssize_t)s->bitmap_bytes)
			return n < 0 ? -errno : -EIO;
		s->free_blocks = 0;
		for (uint64_t b = 0; b < s->blocks; b++)
			s->free_blocks += !bit(s, b);
		return 0;
	}
	if (n != 0) { /* neither empty nor ours: refuse to overwrite someone's file */
		chi_container_error(c, "%s exists and is not a bdev image: left as it is", file);
		return -EEXIST;
	}
	h = (struct file_hdr){ FILE_MAGIC, s->capacity, s->block_size };
	if (ftruncate(s->fd, (off_t)(s->data_off + s->capacity)) != 0)
		rc = -errno;
	if (rc == 0)
		rc = write_at(s->fd, s->bitmap, s->bitmap_bytes, HDR_SIZE);
	if (rc == 0)
		rc = write_at(s->fd, &h, sizeof(h), 0); /* last: a torn create is no device */
	if (rc == 0 && fsync(s->fd) != 0)
		rc = -errno;
	if (rc)
		chi_container_error(c, "cannot lay out %s: %s", file, strerror(-rc));
	return rc;
}

static void bdev_destroy(struct chi_container *c);

static int bdev_setup(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	struct bdev_state *s = chi_container_state(c);
	const char *type = "ram";
	s->fd = -1;
	s->block_size = 4096;
	for (uint32_t i = 0; i < n; i++) {
		if (!strcmp(kv[i].key, "bdev_type"))
			type = kv[i].value;
		else if (!strcmp(kv[i].key, "capacity") && chi_module_parse_size(kv[i].value, &s->capacity))
			return -EINVAL;
		else if (!strcmp(kv[i].key, "alignment") &&
			 (chi_module_parse_size(kv[i].value, &s->block_size) || s->block_size < 512 ||
			  (s->block_size & (s->block_size - 1))))
			return -EINVAL;
	}
	if (strcmp(type, "ram") && strcmp(type, "file")) {
		chi_container_error(c, "bdev_type '%s': expected ram or file", type);
		return -EINVAL;
	}
	if (s->capacity == 0 || s->capacity % s->block_size) {
		chi_container_error(c,
				    "capacity must be a non-zero multiple of the %llu-byte block",
				    (unsigned long long)s->block_size);
		return -EINVAL;
	}
	s->blocks = s->capacity / s->block_size;
	s->bitmap_bytes = ((s->blocks + 7) / 8 + s->block_size - 1) / s->block_size * s->block_size;
	s->data_off = HDR_SIZE + s->bitmap_bytes;
	s->free_blocks = s->blocks;
	s->bitmap = calloc(1, s->bitmap_bytes);
	s->st.capacity = s->capacity;
	s->st.block_size = s->block_size;
	if (!s->bitmap)
		return -ENOMEM;
	if (!strcmp(type, "ram")) {
		s->ram = calloc(1, s->capacity);
		return s->ram ? 0 : -ENOMEM;
	}
	char file[512];
	const char *name = chi_container_pool_name(c);
	int rc = check_file_name(c, name);
	if (rc)
		return rc;
	if (chi_container_count(c) > 1)
		snprintf(file, sizeof(file), "%s.%u", name, chi_container_id(c));
	else
		snprintf(file, sizeof(file), "%s", name);
	return open_file(c, s, file);
}

static int do_io(int fd, const struct io_job *j)
{
	uint64_t done = 0;
	while (done < j->len) {
		ssize_t k = j->write ? pwrite(fd, j->buf + done, j->len - done, j->at + (off_t)done) :
				       pread(fd, j->buf + done, j->len - done, j->at + (off_t)done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		done += (uint64_t)k;
	}
	return 0;
}

static void *io_main(void *arg)
{
	struct bdev_state *s = arg;
	pthread_mutex_lock(&s->io_lock);
	for (;;) {
		while (!s->io_head && !s->io_stop)
			pthread_cond_wait(&s->io_cond, &s->io_lock);
		struct io_job *j = s->io_head;
		if (!j)
			break; /* stopping, queue empty */
		s->io_head = j->next;
		if (!s->io_head)
			s->io_tail = &s->io_head;
		pthread_mutex_unlock(&s->io_lock);
		int rc = do_io(s->fd, j);
		struct chi_park *p = j->park;
		free(j);
		chi_unpark(p, rc);
		pthread_mutex_lock(&s->io_lock);
	}
	pthread_mutex_unlock(&s->io_lock);
	return NULL;
}

static int start_io_thread(struct bdev_state *s)
{
	pthread_mutex_init(&s->io_lock, NULL);
	pthread_cond_init(&s->io_cond, NULL);
	s->io_tail = &s->io_head;
	if (pthread_create(&s->io_thread, NULL, io_main, s) != 0)
		return -EAGAIN;
	s->io_running = 1;
	return 0;
}

/* pread/pwrite on the container's I/O thread while this task is parked: the worker serves
 * other tasks meanwhile. */
static int file_io(struct chi_request *req, struct bdev_state *s, int write, void *buf,
		   uint64_t len, off_t at)
{
	struct io_job *j = calloc(1, sizeof(*j));
	struct chi_park *park = j ? chi_park_prepare(req) : NULL;
	if (!park) {
		free(j);
		return -ENOMEM;
	}
	*j = (struct io_job){ write, buf, len, at, park, NULL };
	pthread_mutex_lock(&s->io_lock);
	*s->io_tail = j;
	s->io_tail = &j->next;
	pthread_cond_signal(&s->io_cond);
	pthread_mutex_unlock(&s->io_lock);
	return chi_park(req, park);
}

/* Write the bitmap bytes covering [first, first+n) through to the file. */
static int persist_bits(struct chi_request *req, struct bdev_state *s, uint64_t first,
			uint64_t n)
{
	if (s->fd < 0)
		return 0;
	uint64_t lo = first / 8, hi = (first + n + 7) / 8;
	return file_io(req, s, 1, s->bitmap + lo, hi - lo, (off_t)(HDR_SIZE + lo));
}

static int bdev_create(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	int rc = bdev_setup(c, kv, n);
	struct bdev_state *s = chi_container_state(c);
	if (rc == 0 && s->fd >= 0)
		rc = start_io_thread(s);
	if (rc)
		bdev_destroy(c); /* the runtime calls destroy only after a successful create */
	return rc;
}

static void bdev_destroy(struct chi_container *c)
{
	struct bdev_state *s = chi_container_state(c);
	if (s->io_running) { /* finish what is queued, then stop */
		pthread_mutex_lock(&s->io_lock);
		s->io_stop = 1;
		pthread_cond_signal(&s->io_cond);
		pthread_mutex_unlock(&s->io_lock);
		pthread_join(s->io_thread, NULL);
		s->io_running = 0;
		pthread_cond_destroy(&s->io_cond);
		pthread_mutex_destroy(&s->io_lock);
	}
	if (s->fd >= 0) {
		fsync(s->fd);
		close(s->fd);
	}
	free(s->ram);
	free(s->bitmap);
	s->fd = -1;
	s->ram = NULL;
	s->bitmap = NULL;
}

static int bdev_allocate(struct chi_request *req)
{
	struct bdev_state *s = chi_container_state(chi_req_container(req));
	uint32_t size;
	struct chi_bdev_alloc_params *io = chi_req_params(req, &size);
	uint64_t len = io->length;
	if (len == 0 || len > s->capacity)
		return -EINVAL;
	uint64_t need = (len + s->block_size - 1) / s->block_size;
	if (need > s->free_blocks)
		return -ENOSPC;
	/* First fit from the hint, wrapping once. */
	for (uint64_t pass = 0, start = s->hint; pass < 2; pass++, start = 0) {
		uint64_t run = 0;
		for (uint64_t b = start; b < s->blocks; b++) {
			run = bit(s, b) ? 0 : run + 1;
			if (run < need)
				continue;
			uint64_t first = b + 1 - need;
			set_bits(s, first, need, 1);
			/* Taken before the write-through: a task that runs while this one is
			 * parked sees these blocks as used. */
			int rc = persist_bits(req, s, first, need);
			if (rc) {
				set_bits(s, first, need, 0);
				return rc;
			}
			s->hint = b + 1;
			io->offset = first * s->block_size;
			io->length = need * s->block_size;
			return 0;
		}
	}
	return -ENOSPC; /* enough free blocks, but not in one run */
}

static int extent(const struct bdev_state *s, uint64_t off, uint64_t len, uint64_t *first,
		  uint64_t *n)
{
	if (len == 0 || off % s->block_size || off >= s->capacity || len > s->capacity - off)
		return -EINVAL;
	*first = off / s->block_size;
	*n = (len + s->block_size - 1) / s->block_size;
	return 0;
}

static int bdev_free(struct chi_request *req)
{
	struct bdev_state *s = chi_container_state(chi_req_container(req));
	uint32_t size;
	struct chi_bdev_alloc_params p;
	uint64_t first, n;
	memcpy(&p, chi_req_params(req, &size), sizeof(p));
	if (extent(s, p.offset, p.length, &first, &n))
		return -EINVAL;
	for (uint64_t b = first; b < first + n; b++)
		if (!bit(s, b))
			return -EINVAL; /* not allocated: a double free, or a wrong extent */
	if (s->fd < 0) {
		set_bits(s, first, n, 0);
		return 0;
	}
	/* Persist the cleared bits from a copy first: until the file says free, the blocks stay
	 * taken in memory too, so a task running while this one is parked cannot reuse them. */
	uint64_t lo = first / 8, hi = (first + n + 7) / 8;
	unsigned char *copy = malloc(hi - lo);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, s->bitmap + lo, hi - lo);
	for (uint64_t b = first; b < first + n; b++)
		copy[b / 8 - lo] &= (unsigned char)~(1u << (b % 8));
	int rc = file_io(req, s, 1, copy, hi - lo, (off_t)(HDR_SIZE + lo));
	free(copy);
	if (rc == 0) {
		/* Re-check: a concurrent Free of an overlapping extent may have won meanwhile. */
		for (uint64_t b = first; b < first + n; b++)
			if (!bit(s, b))
				return -EINVAL;
		set_bits(s, first, n, 0);
	}
	return rc;
}

/* Reads and writes must stay inside allocated blocks. */
static int io_check(struct bdev_state *s, uint64_t off, uint64_t len)
{
	uint64_t first, n;
	if (len == 0)
		return 0;
	if (off >= s->capacity || len > s->capacity - off)
		return -EINVAL;
	first = off / s->block_size;
	n = (off + len + s->block_size - 1) / s->block_size - first;
	for (uint64_t b = first; b < first + n; b++)
		if (!bit(s, b))
			return -EFAULT;
	return 0;
}

static int bdev_rw(struct chi_request *req, int write)
{
	struct bdev_state *s = chi_container_state(chi_req_container(req));
	uint32_t size;
	struct chi_bdev_io_params p;
	memcpy(&p, chi_req_params(req, &size), sizeof(p));
	unsigned char *buf = chi_req_bulk(req, &p.buf);
	if (!buf)
		return -EFAULT;
	int rc = io_check(s, p.offset, p.buf.length);
	if (rc)
		return rc;
	if (s->ram) {
		if (write)
			memcpy(s->ram + p.offset, buf, p.buf.length);
		else
			memcpy(buf, s->ram + p.offset, p.buf.length);
	} else if (p.buf.length) {
		rc = file_io(req, s, write, buf, p.buf.length, (off_t)(s->data_off + p.offset));
		if (rc)
			return rc;
	}
	if (write) {
		s->st.writes++;
		s->st.bytes_written += p.buf.length;
	} else {
		s->st.reads++;
		s->st.bytes_read += p.buf.length;
	}
	return 0;
}

static int bdev_write(struct chi_request *req)
{
	return bdev_rw(req, 1);
}

static int bdev_read(struct chi_request *req)
{
	return bdev_rw(req, 0);
}

static int bdev_stats(struct chi_request *req)
{
	struct bdev_state *s = chi_container_state(chi_req_container(req));
	uint32_t size;
	struct chi_bdev_stats *out = chi_req_params(req, &size);
	s->st.free_bytes = s->free_blocks * s->block_size;
	memcpy(out, &s->st, sizeof(*out));
	return 0;
}

/* The bulk buffers each method moves (module.h: checked by the runtime, staged across nodes). */
static const struct chi_bulk_field write_bulk[] = {
	{ offsetof(struct chi_bdev_io_params, buf), CHI_BULK_IN, 0, 0 },
};
static const struct chi_bulk_field read_bulk[] = {
	{ offsetof(struct chi_bdev_io_params, buf), CHI_BULK_OUT, CHI_BULK_LEN_WHOLE, 0 },
};

static const struct chi_method_desc bdev_methods[] = {
	{ CHI_BDEV_ALLOCATE, "allocate", bdev_allocate, CHI_METHOD_MAY_YIELD,
	  sizeof(struct chi_bdev_alloc_params), NULL, NULL, 0 },
	{ CHI_BDEV_FREE, "free", bdev_free, CHI_METHOD_MAY_YIELD,
	  sizeof(struct chi_bdev_alloc_params), NULL, NULL, 0 },
	{ CHI_BDEV_WRITE, "write", bdev_write, CHI_METHOD_MAY_YIELD,
	  sizeof(struct chi_bdev_io_params), NULL, write_bulk, 1 },
	{ CHI_BDEV_READ, "read", bdev_read, CHI_METHOD_READ_ONLY | CHI_METHOD_MAY_YIELD,
	  sizeof(struct chi_bdev_io_params), NULL, read_bulk, 1 },
	{ CHI_BDEV_STATS, "stats", bdev_stats, CHI_METHOD_READ_ONLY, sizeof(struct chi_bdev_stats),
	  NULL, NULL, 0 },
};

static const struct chi_module_desc bdev_desc = {
	.abi_version = CHI_MODULE_ABI_VERSION,
	.name = "bdev",
	.state_size = sizeof(struct bdev_state),
	.create = bdev_create,
	.destroy = bdev_destroy,
	.methods = bdev_methods,
	.num_methods = sizeof(bdev_methods) / sizeof(bdev_methods[0]),
};

CHI_MODULE_DEFINE(bdev_desc)
