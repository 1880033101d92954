/* The join handshake (handshake.h; docs/design/handshake.md has the layouts and the reasoning).
 *
 * Crypto, all from libsodium: HMAC-SHA256 (crypto_auth_hmacsha256) for the proofs, verified
 * in constant time by crypto_auth_hmacsha256_verify; BLAKE2b (crypto_generichash) to turn the
 * secret file into the 32-byte key; randombytes_buf for the nonces; sodium_memzero for
 * everything that held the key or the secret. */
#include "handshake.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "le.h"
#include "wire.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the handshake's integers are little-endian, as the wire format's (docs/wire.md)"
#endif

_Static_assert(crypto_auth_hmacsha256_BYTES == HS_MAC_LEN, "HMAC-SHA256 tag size");
_Static_assert(crypto_auth_hmacsha256_KEYBYTES == HS_KEY_LEN, "HMAC-SHA256 key size");
_Static_assert(HS_HELLO_LEN <= HS_MAX_MSG && HS_AUTH_LEN <= HS_MAX_MSG, "HS_MAX_MSG");
_Static_assert(HS_MAX_MSG <= WIRE_DEFAULT_MAX_HELLO, "a receiver with default limits takes it");
_Static_assert(HS_HELLO_LEN % 8 == 0 && HS_AUTH_LEN % 8 == 0, "whole wire words: no padding");

/* Byte offsets. Every message begins with magic, format and kind. The first 16 bytes of a
 * HELLO (those and the versions) keep their place in every format, so that nodes of any two
 * versions can tell each other what they speak. */
#define OFF_MAGIC  0 /* u32 HS_MAGIC */
#define OFF_FORMAT 4 /* u8 HS_FORMAT */
#define OFF_KIND   5 /* u8 enum hs_kind */
#define HDR_LEN	   6
/* HELLO */
#define OFF_WIRE_MAJOR	6  /* u8 */
#define OFF_WIRE_MINOR	7  /* u8 */
#define OFF_PROTO	8  /* u32 */
#define OFF_HELLO_RSVD0 12 /* u32, 0 */
#define HELLO_FROZEN	16 /* the part every format keeps */
#define OFF_NODE	16 /* u32 */
#define OFF_WORKER	20 /* u16 */
#define OFF_HELLO_RSVD1 22 /* u16, 0 */
#define OFF_NONCE	24 /* HS_NONCE_LEN bytes */
/* AUTH */
#define OFF_AUTH_RSVD 6 /* u16, 0 */
#define OFF_MAC	      8 /* HS_MAC_LEN bytes */
_Static_assert(OFF_NONCE + HS_NONCE_LEN == HS_HELLO_LEN, "HELLO layout");
_Static_assert(OFF_MAC + HS_MAC_LEN == HS_AUTH_LEN, "AUTH layout");

/* What each proof is over: a role label, then both HELLOs as they crossed the wire. The
 * labels have one length, so label || HELLO_I || HELLO_R parses one way only; the label is
 * what makes an initiator's MAC useless as a responder's and the reverse (reflection). */
#define LABEL_LEN 16
static const char label_init[LABEL_LEN + 1] = "CHI-JOIN-INIT-v1";
static const char label_resp[LABEL_LEN + 1] = "CHI-JOIN-RESP-v1";
#define TRANSCRIPT_LEN (LABEL_LEN + 2 * HS_HELLO_LEN)

/* The key derivation's BLAKE2b personal string, of crypto_generichash_blake2b_PERSONALBYTES. */
static const char key_personal[crypto_generichash_blake2b_PERSONALBYTES + 1] = "CHI-CLUSTER-KEY1";

enum state {
	ST_NEW = 0,	   /* initiator before hs_start() */
	ST_WAIT_HELLO = 1, /* waiting for the peer's HELLO */
	ST_WAIT_AUTH = 2,  /* waiting for the peer's proof */
	ST_DONE = 3,
	ST_FAILED = 4,
};

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void sodium_start(void)
{
	/* 0 the first time, 1 when someone else did it already: both fine. */
	sodium_ok = sodium_init() >= 0;
}

static int sodium_ready(void)
{
	pthread_once(&sodium_once, sodium_start);
	return sodium_ok ? 0 : -EIO;
}





static int expected_kind(const struct hs *hs)
{
	if (hs->state == ST_WAIT_HELLO)
		return hs->role == HS_INITIATOR ? HS_HELLO_R : HS_HELLO_I;
	return hs->role == HS_INITIATOR ? HS_AUTH_R : HS_AUTH_I;
}

/* Failure is final; the key copy goes at once, nothing needs it any more. */
static int fail(struct hs *hs, int code)
{
	hs->state = ST_FAILED;
	sodium_memzero(hs->key, sizeof(hs->key));
	if (code != HS_E_VERSION && code != HS_E_FORMAT) {
		memset(&hs->peer, 0, sizeof(hs->peer));
		hs->peer_versions = 0;
	}
	return code;
}

static void put_header(uint8_t *m, unsigned kind)
{
	le_put32(m + OFF_MAGIC, HS_MAGIC);
	m[OFF_FORMAT] = HS_FORMAT;
	m[OFF_KIND] = (uint8_t)kind;
}

/* This side's HELLO, with a fresh nonce. */
static void build_hello(const struct hs *hs, unsigned kind, uint8_t *m)
{
	memset(m, 0, HS_HELLO_LEN);
	put_header(m, kind);
	m[OFF_WIRE_MAJOR] = hs->local.wire_major;
	m[OFF_WIRE_MINOR] = hs->local.wire_minor;
	le_put32(m + OFF_PROTO, hs->local.proto);
	le_put32(m + OFF_NODE, hs->local.node);
	le_put16(m + OFF_WORKER, hs->local.worker);
	randombytes_buf(m + OFF_NONCE, HS_NONCE_LEN);
}

static void transcript(const struct hs *hs, const char *label, uint8_t *t)
{
	memcpy(t, label, LABEL_LEN);
	memcpy(t + LABEL_LEN, hs->hello_i, HS_HELLO_LEN);
	memcpy(t + LABEL_LEN + HS_HELLO_LEN, hs->hello_r, HS_HELLO_LEN);
}

/* This side's proof, as an AUTH message in @m. */
static void build_auth(const struct hs *hs, uint8_t *m)
{
	int init = hs->role == HS_INITIATOR;
	uint8_t t[TRANSCRIPT_LEN];

	memset(m, 0, HS_AUTH_LEN);
	put_header(m, init ? HS_AUTH_I : HS_AUTH_R);
	transcript(hs, init ? label_init : label_resp, t);
	crypto_auth_hmacsha256(m + OFF_MAC, t, sizeof(t), hs->key);
}

/* The peer's proof, checked in constant time. */
static int auth_ok(const struct hs *hs, const uint8_t *m)
{
	uint8_t t[TRANSCRIPT_LEN];

	transcript(hs, hs->role == HS_INITIATOR ? label_resp : label_init, t);
	return crypto_auth_hmacsha256_verify(m + OFF_MAC, t, sizeof(t), hs->key) == 0;
}

/* The peer's HELLO, whose header was checked: versions first (they are what any two formats
 * can still read), then the rest. */
static int check_hello(struct hs *hs, const uint8_t *in, size_t inlen)
{
	if (inlen >= HELLO_FROZEN) {
		hs->peer.wire_major = in[OFF_WIRE_MAJOR];
		hs->peer.wire_minor = in[OFF_WIRE_MINOR];
		hs->peer.proto = le_get32(in + OFF_PROTO);
	}
	if (in[OFF_FORMAT] != HS_FORMAT) {
		hs->peer_versions = inlen >= HELLO_FROZEN;
		return HS_E_FORMAT;
	}
	if (inlen < HELLO_FROZEN)
		return HS_E_LENGTH;
	if (hs->peer.wire_major != hs->local.wire_major || hs->peer.proto != hs->local.proto) {
		hs->peer_versions = 1;
		return HS_E_VERSION;
	}
	if (inlen != HS_HELLO_LEN)
		return HS_E_LENGTH;
	if (le_get32(in + OFF_HELLO_RSVD0) != 0 || le_get16(in + OFF_HELLO_RSVD1) != 0)
		return HS_E_RESERVED;
	uint32_t node = le_get32(in + OFF_NODE);
	/* A client is no member: only a responder that takes clients lets it in, and never an
	 * initiator (a client dials; nobody dials a client). */
	if (node == HS_NODE_CLIENT ? !hs->accept_clients : node >= hs->num_nodes)
		return HS_E_NODE;
	if (node == hs->local.node)
		return HS_E_SELF;
	hs->peer.node = node;
	hs->peer.worker = le_get16(in + OFF_WORKER);
	return 0;
}

static int check_auth(const uint8_t *in, size_t inlen)
{
	if (in[OFF_FORMAT] != HS_FORMAT)
		return HS_E_FORMAT;
	if (inlen != HS_AUTH_LEN)
		return HS_E_LENGTH;
	if (le_get16(in + OFF_AUTH_RSVD) != 0)
		return HS_E_RESERVED;
	return 0;
}

int hs_init(struct hs *hs, enum hs_role role, const uint8_t key[HS_KEY_LEN],
	    const struct hs_ids *local, uint32_t num_nodes)
{
	if (!hs || !key || !local || (role != HS_INITIATOR && role != HS_RESPONDER) ||
	    num_nodes == 0 ||
	    (local->node >= num_nodes && !(role == HS_INITIATOR && local->node == HS_NODE_CLIENT)))
		return -EINVAL;
	int rc = sodium_ready();
	if (rc)
		return rc;
	memset(hs, 0, sizeof(*hs));
	memcpy(hs->key, key, HS_KEY_LEN);
	hs->local = *local;
	hs->num_nodes = num_nodes;
	hs->role = (uint8_t)role;
	hs->state = role == HS_INITIATOR ? ST_NEW : ST_WAIT_HELLO;
	return 0;
}

int hs_accept_clients(struct hs *hs)
{
	if (!hs || hs->role != HS_RESPONDER || hs->state != ST_WAIT_HELLO)
		return -EINVAL;
	hs->accept_clients = 1;
	return 0;
}

void hs_fini(struct hs *hs)
{
	if (hs)
		sodium_memzero(hs, sizeof(*hs));
}

int hs_start(struct hs *hs, uint8_t *out, size_t *outlen)
{
	if (!hs || !out || !outlen || *outlen < HS_MAX_MSG || hs->role != HS_INITIATOR ||
	    hs->state != ST_NEW)
		return -EINVAL;
	build_hello(hs, HS_HELLO_I, hs->hello_i);
	memcpy(out, hs->hello_i, HS_HELLO_LEN);
	*outlen = HS_HELLO_LEN;
	hs->state = ST_WAIT_HELLO;
	return HS_CONTINUE;
}

int hs_receive(struct hs *hs, const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen)
{
	if (!hs || (!in && inlen) || !out || !outlen || *outlen < HS_MAX_MSG ||
	    (hs->role != HS_INITIATOR && hs->role != HS_RESPONDER) || hs->state == ST_NEW)
		return -EINVAL;
	*outlen = 0;
	/* Done or failed: nothing more is taken, and what is known of the peer stays. */
	if (hs->state != ST_WAIT_HELLO && hs->state != ST_WAIT_AUTH)
		return HS_E_STATE;
	if (inlen < HDR_LEN)
		return fail(hs, HS_E_LENGTH);
	if (le_get32(in + OFF_MAGIC) != HS_MAGIC)
		return fail(hs, HS_E_MAGIC);
	unsigned kind = in[OFF_KIND];
	if (kind < HS_HELLO_I || kind > HS_AUTH_R)
		return fail(hs, HS_E_KIND);
	/* A repeated HELLO, a proof before the HELLOs, our own message sent back. */
	if (kind != (unsigned)expected_kind(hs))
		return fail(hs, HS_E_STATE);

	int rc;
	if (hs->state == ST_WAIT_HELLO) {
		rc = check_hello(hs, in, inlen);
		if (rc)
			return fail(hs, rc);
		if (hs->role == HS_RESPONDER) {
			/* Only now, with the initiator's nonce in hand, does the responder pick its
			 * own; it proves nothing until the initiator has. */
			memcpy(hs->hello_i, in, HS_HELLO_LEN);
			build_hello(hs, HS_HELLO_R, hs->hello_r);
			memcpy(out, hs->hello_r, HS_HELLO_LEN);
			*outlen = HS_HELLO_LEN;
		} else {
			/* Our own nonce coming back means our HELLO was reflected (with its kind
			 * rewritten): refuse before proving anything over it. */
			if (memcmp(in + OFF_NONCE, hs->hello_i + OFF_NONCE, HS_NONCE_LEN) == 0)
				return fail(hs, HS_E_REFLECT);
			memcpy(hs->hello_r, in, HS_HELLO_LEN);
			build_auth(hs, out);
			*outlen = HS_AUTH_LEN;
		}
		hs->state = ST_WAIT_AUTH;
		return HS_CONTINUE;
	}

	rc = check_auth(in, inlen);
	if (rc)
		return fail(hs, rc);
	if (!auth_ok(hs, in))
		return fail(hs, HS_E_AUTH);
	if (hs->role == HS_RESPONDER) {
		build_auth(hs, out);
		*outlen = HS_AUTH_LEN;
	}
	hs->state = ST_DONE;
	sodium_memzero(hs->key, sizeof(hs->key));
	return HS_DONE;
}

const struct hs_ids *hs_peer(const struct hs *hs)
{
	if (!hs)
		return NULL;
	if (hs->state == ST_DONE || (hs->state == ST_FAILED && hs->peer_versions))
		return &hs->peer;
	return NULL;
}

int hs_msg_is_hello(const uint8_t *msg, size_t len)
{
	return msg && len > OFF_KIND &&
	       (msg[OFF_KIND] == HS_HELLO_I || msg[OFF_KIND] == HS_HELLO_R);
}

void hs_key_wipe(uint8_t key[HS_KEY_LEN])
{
	if (key)
		sodium_memzero(key, HS_KEY_LEN);
}

/* ---- the secret file ---- */

__attribute__((format(printf, 3, 4))) static void say(char *why, size_t whylen, const char *fmt,
						      ...)
{
	if (!why || !whylen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static const char *file_type(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	return "not a plain file";
}

/* The size rules, for fstat's size and again for what read() gave (the file may change). */
static int size_ok(const char *path, long long n, char *why, size_t whylen)
{
	if (n < (long long)HS_SECRET_MIN) {
		say(why, whylen,
		    "%s: holds %lld bytes; a cluster secret needs at least %u "
		    "(make one: head -c 64 /dev/urandom > %s && chmod 600 %s)",
		    path, n, HS_SECRET_MIN, path, path);
		return -EINVAL;
	}
	if (n > (long long)HS_SECRET_MAX) {
		say(why, whylen, "%s: holds %lld bytes; a cluster secret is at most %u", path, n,
		    HS_SECRET_MAX);
		return -EFBIG;
	}
	return 0;
}

int hs_secret_load(const char *path, uint8_t key_out[HS_KEY_LEN], char *why, size_t whylen)
{
	/* One byte more than allowed, so that a file that grew after fstat is seen to. */
	uint8_t buf[HS_SECRET_MAX + 1];
	struct stat st;
	size_t n = 0;
	int rc;

	if (why && whylen)
		why[0] = '\0';
	if (!path || !path[0] || !key_out) {
		say(why, whylen, "no secret file given");
		return -EINVAL;
	}
	rc = sodium_ready();
	if (rc) {
		say(why, whylen, "%s: libsodium could not be initialised", path);
		return rc;
	}
	/* O_NONBLOCK: a FIFO at the path must not hang the start waiting for a writer. Every
	 * check below is on the file opened (fstat), not on the path, so nothing can be swapped
	 * in between the checks and the read. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		say(why, whylen, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		say(why, whylen, "%s: cannot stat: %s", path, strerror(-rc));
		goto err_close;
	}
	if (!S_ISREG(st.st_mode)) {
		say(why, whylen, "%s: is %s; the cluster secret must be a regular file", path,
		    file_type(st.st_mode));
		rc = -EINVAL;
		goto err_close;
	}
	if (st.st_uid != geteuid()) {
		say(why, whylen,
		    "%s: is owned by uid %u, not by uid %u that runs this node; a secret "
		    "someone else owns could be read or replaced by them",
		    path, (unsigned)st.st_uid, (unsigned)geteuid());
		rc = -EACCES;
		goto err_close;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		say(why, whylen,
		    "%s: has mode %04o; group and others must have no access (chmod 600 %s)", path,
		    (unsigned)(st.st_mode & 07777), path);
		rc = -EACCES;
		goto err_close;
	}
	rc = size_ok(path, (long long)st.st_size, why, whylen);
	if (rc)
		goto err_close;
	while (n < sizeof(buf)) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			say(why, whylen, "%s: cannot read: %s", path, strerror(-rc));
			goto err_wipe;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	rc = size_ok(path, (long long)n, why, whylen);
	if (rc)
		goto err_wipe;
	size_t same = 1;
	while (same < n && buf[same] == buf[0])
		same++;
	if (same == n) {
		say(why, whylen,
		    "%s: is %zu times the same byte, not a secret "
		    "(make one: head -c 64 /dev/urandom > %s && chmod 600 %s)",
		    path, n, path, path);
		rc = -EINVAL;
		goto err_wipe;
	}
	crypto_generichash_blake2b_salt_personal(key_out, HS_KEY_LEN, buf, n, NULL, 0, NULL,
						 (const unsigned char *)key_personal);
	rc = 0;
err_wipe:
	sodium_memzero(buf, sizeof(buf));
err_close:
	close(fd);
	return rc;
}

const char *hs_strerror(int code)
{
	switch (code) {
	case HS_CONTINUE:
		return "handshake continues";
	case HS_DONE:
		return "handshake done";
	case HS_E_LENGTH:
		return "handshake message of the wrong length for its kind";
	case HS_E_MAGIC:
		return "not a handshake message (bad magic)";
	case HS_E_KIND:
		return "unknown handshake message kind";
	case HS_E_STATE:
		return "handshake message out of order (repeated, reflected or after the end)";
	case HS_E_FORMAT:
		return "peer speaks another handshake format";
	case HS_E_VERSION:
		return "peer speaks another wire major version or cluster protocol version";
	case HS_E_RESERVED:
		return "reserved bytes of a handshake message are not zero";
	case HS_E_NODE:
		return "peer's node id is out of range";
	case HS_E_SELF:
		return "peer claims this node's own id (two nodes with one id?)";
	case HS_E_REFLECT:
		return "peer sent our own nonce back (reflected HELLO)";
	case HS_E_AUTH:
		return "authentication failed: the peer does not hold the cluster secret";
	case -EINVAL:
		return "invalid argument";
	case -EIO:
		return "libsodium could not be initialised";
	default:
		return "unknown handshake error";
	}
}
