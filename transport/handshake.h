/* The join handshake between two nodes: both prove that they hold the cluster secret, with an
 * HMAC over fresh nonces from both sides, and say which protocol versions they speak.
 * docs/design/handshake.md has the message layouts, the transcript and the reasoning.
 *
 * A pure state machine over opaque payload bytes: no sockets, no frames, no clock. The runtime
 * carries each message as the data of a WIRE_HELLO or WIRE_AUTH frame (transport/wire.h; the
 * kind of message decides which, see hs_msg_is_hello()), feeds what arrives to hs_receive()
 * and sends what comes out:
 *
 *   initiator (dials)                      responder (accepts)
 *   hs_start()        -- HELLO_I -->       hs_receive(): HS_CONTINUE
 *   hs_receive():     <-- HELLO_R --
 *     HS_CONTINUE     -- AUTH_I  -->       hs_receive(): verifies, HS_DONE
 *   hs_receive():     <-- AUTH_R  --
 *     verifies, HS_DONE
 *
 * The initiator proves first; the responder proves only to a peer that has proved, so whoever
 * can reach a listening port gets no MAC (docs/design/handshake.md, "Who proves first").
 *
 * What the caller must do besides:
 *  - bound the whole handshake in time (a peer that stops half-way is closed with
 *    WIRE_CLOSE_TIMEOUT): nothing here has a clock;
 *  - accept no other frame on the connection before HS_DONE, and no HELLO or AUTH after it;
 *  - map a failure to the CLOSE it sends: HS_E_VERSION and HS_E_FORMAT give
 *    WIRE_CLOSE_VERSION (detail: its own wire version), every other HS_E_* code
 *    WIRE_CLOSE_AUTH with detail 0, so a stranger learns nothing but "authentication failed";
 *    the precise hs_strerror() reason goes to the local log only;
 *  - after HS_DONE: check that hs_peer() is the node (and worker) it dialled, that later
 *    frames' src_node is hs_peer()->node, and send at the lower of the two wire minors;
 *  - without networking.secret_file it has no key: it must not join a cluster at all, and binds
 *    loopback only (the runtime says so in its log).
 *
 * Ownership: struct hs is the caller's (embed it in the connection); it holds a copy of the
 * key, which hs_fini() wipes. Nothing allocates. One thread at a time per struct hs. */
#ifndef CHI_TRANSPORT_HANDSHAKE_H
#define CHI_TRANSPORT_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#define HS_KEY_LEN   32u	 /* the cluster key, derived from the secret file */
#define HS_NONCE_LEN 32u	 /* fresh random bytes per side per handshake */
#define HS_MAC_LEN   32u	 /* HMAC-SHA256 */
#define HS_MAGIC     0x4a494843u /* "CHIJ" little-endian */
#define HS_FORMAT    1u		 /* the layout of the messages below */
#define HS_HELLO_LEN 56u	 /* HELLO_I and HELLO_R */
#define HS_AUTH_LEN  40u	 /* AUTH_I and AUTH_R */
/* No message is longer: an output buffer of this size always suffices. Far below
 * WIRE_DEFAULT_MAX_HELLO (4096), the largest HELLO or AUTH data a receiver accepts. */
#define HS_MAX_MSG 64u

/* The node id a remote client (CHI_IPC_MODE=TCP) claims in its HELLO_I: no member of any
 * membership has it. Only a responder that called hs_accept_clients() takes it; the client
 * proves the cluster secret like a node (docs/design/handshake.md, "Remote clients"). */
#define HS_NODE_CLIENT 0xffffffffu

/* networking.secret_file: at least this many bytes, at most HS_SECRET_MAX. */
#define HS_SECRET_MIN 32u
#define HS_SECRET_MAX 4096u

/* Returned by hs_receive() (and hs_start()) when things go on. */
#define HS_CONTINUE 0 /* send *outlen bytes if not 0, then wait for the peer's next message */
#define HS_DONE	    1 /* authenticated: send *outlen bytes if not 0; hs_peer() is valid */

enum hs_role {
	HS_INITIATOR = 1, /* dialled the connection; speaks first */
	HS_RESPONDER = 2, /* accepted it */
};

/* Message kinds, byte 5 of every message. */
enum hs_kind {
	HS_HELLO_I = 1, /* initiator's HELLO: versions, ids, nonce_i */
	HS_HELLO_R = 2, /* responder's HELLO: versions, ids, nonce_r */
	HS_AUTH_I = 3,	/* initiator's proof: mac_i */
	HS_AUTH_R = 4,	/* responder's proof: mac_r */
};

/* Rejections, each its own code (hs_strerror() has the text). Apart from -2048.. (wire.h). */
enum hs_error {
	HS_E_BASE = -2304,
	HS_E_LENGTH = HS_E_BASE, /* wrong length for its kind */
	HS_E_MAGIC = -2305,	 /* not a handshake message */
	HS_E_KIND = -2306,	 /* unknown message kind */
	HS_E_STATE = -2307,	 /* a message out of order: repeated, reflected, after the end */
	HS_E_FORMAT = -2308,	 /* the peer speaks another handshake format */
	HS_E_VERSION = -2309,	 /* another wire major version or cluster protocol version */
	HS_E_RESERVED = -2310,	 /* reserved bytes are not zero */
	HS_E_NODE = -2311,	 /* the peer's node id is not below the number of nodes */
	HS_E_SELF = -2312,	 /* the peer claims this node's own id */
	HS_E_REFLECT = -2313,	 /* the peer's nonce is ours: our HELLO came back */
	HS_E_AUTH = -2314,	 /* the peer's MAC is wrong: it does not hold the key */
	HS_E_LAST = HS_E_AUTH
};

/* Who a side is and what it speaks. Every field goes into the transcript both sides MAC. */
struct hs_ids {
	uint32_t node;	    /* node id, below the caller's number of nodes */
	uint16_t worker;    /* the worker that owns this connection on that node */
	uint8_t wire_major; /* WIRE_VERSION_MAJOR: must be equal on both sides */
	uint8_t wire_minor; /* the highest wire minor it speaks: may differ */
	uint32_t proto;	    /* the cluster protocol version: must be equal on both sides */
};

/* One handshake. The layout is public so that a connection can embed it without an
 * allocation; the fields are private to handshake.c. */
struct hs {
	uint8_t key[HS_KEY_LEN];
	uint8_t hello_i[HS_HELLO_LEN]; /* the transcript: both HELLOs, byte for byte */
	uint8_t hello_r[HS_HELLO_LEN];
	struct hs_ids local;
	struct hs_ids peer;
	uint32_t num_nodes;
	uint8_t role;	       /* enum hs_role */
	uint8_t state;	       /* handshake.c's enum */
	uint8_t peer_versions; /* peer's versions read (HS_E_VERSION, HS_E_FORMAT, HS_DONE) */
	uint8_t accept_clients; /* a responder that takes HS_NODE_CLIENT (hs_accept_clients) */
};

/**
 * Start a handshake: @p hs is ready for hs_start() (initiator) or for the first
 * hs_receive() (responder). A responder that must tell the peer which worker owns the
 * connection inits when the first HELLO frame comes, with that frame's dst_worker.
 * @param key The cluster key (hs_secret_load()); copied.
 * @param local This side; local->node must be below @p num_nodes, or HS_NODE_CLIENT for an
 *        initiator that is a remote client (it then passes HS_NODE_CLIENT as @p num_nodes:
 *        whichever node answers).
 * @param num_nodes Peers' node ids must be below it (the membership's size).
 * @return 0; -EINVAL (NULL, unknown role, num_nodes 0, local node out of range); -EIO
 *         (libsodium could not be initialised).
 */
int hs_init(struct hs *hs, enum hs_role role, const uint8_t key[HS_KEY_LEN],
	    const struct hs_ids *local, uint32_t num_nodes);

/**
 * Let a responder take a peer that claims HS_NODE_CLIENT (a remote client) besides the
 * members. Call after hs_init(), before the first hs_receive(). Without it such a HELLO is
 * HS_E_NODE. hs_peer()->node tells the caller which it got.
 * @return 0; -EINVAL (NULL, an initiator, or the handshake has begun).
 */
int hs_accept_clients(struct hs *hs);

/** Wipe @p hs (the key copy, nonces, transcript). Harmless twice. */
void hs_fini(struct hs *hs);

/**
 * The initiator's first message, HELLO_I, with a fresh nonce.
 * @param out At least *@p outlen bytes; *@p outlen must be at least HS_MAX_MSG on entry.
 * @param outlen In: the room at @p out; out: the length of the message.
 * @return HS_CONTINUE; -EINVAL (not an initiator, called twice, NULL, too little room).
 */
int hs_start(struct hs *hs, uint8_t *out, size_t *outlen);

/**
 * Take the peer's next message (@p in, @p inlen bytes: the data of a HELLO or AUTH frame)
 * and produce the answer, if any, in @p out.
 * @param outlen In: the room at @p out (at least HS_MAX_MSG); out: bytes to send (maybe 0).
 * @return HS_CONTINUE (send *@p outlen bytes if not 0, wait for more); HS_DONE (send
 *         *@p outlen bytes if not 0; the peer is authenticated, see hs_peer()); an HS_E_*
 *         code: the handshake has failed, for good (every later call gives HS_E_STATE), and
 *         the caller closes the connection; -EINVAL (NULL, too little room, an initiator
 *         before hs_start()): misuse, nothing changed. After HS_DONE every call gives
 *         HS_E_STATE and changes nothing (hs_peer() stays valid).
 */
int hs_receive(struct hs *hs, const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen);

/**
 * The authenticated peer: valid after HS_DONE. After HS_E_VERSION (and after HS_E_FORMAT
 * when the peer's HELLO was long enough) only its wire_major, wire_minor and proto are
 * filled, for the log; node and worker are 0 then.
 * @return a pointer into @p hs, or NULL when nothing is known of the peer.
 */
const struct hs_ids *hs_peer(const struct hs *hs);

/** @return 1 if @p msg is a HELLO (send it as WIRE_HELLO), 0 otherwise (WIRE_AUTH). */
int hs_msg_is_hello(const uint8_t *msg, size_t len);

/**
 * Derive the cluster key from the secret file at @p path (networking.secret_file). The file
 * is refused unless it is a regular file (symbolic links are followed; the file they lead to
 * is the one checked), owned by the effective uid, with no group or other permission bits
 * (0600 or 0400), of HS_SECRET_MIN..HS_SECRET_MAX bytes, not all one byte value. The key is
 * BLAKE2b-256 of the whole contents with the personal string "CHI-CLUSTER-KEY1"; the raw
 * secret is wiped from memory at once. A node without a secret file binds loopback only: the
 * runtime decides that, nothing here.
 * @param key_out The key (wipe it with hs_key_wipe() when done).
 * @param why Filled on failure with "PATH: the problem" (and how to fix it).
 * @return 0; -EINVAL (NULL or empty path, not a regular file, too short, one byte value);
 *         -EACCES (another owner, group or other bits set); -EFBIG (too long); -EIO
 *         (libsodium could not be initialised); -errno from open() or read().
 */
int hs_secret_load(const char *path, uint8_t key_out[HS_KEY_LEN], char *why, size_t whylen);

/** Overwrite a key with zeros in a way the compiler does not drop. */
void hs_key_wipe(uint8_t key[HS_KEY_LEN]);

/** A static, human-readable reason for an HS_E_* code (or -EINVAL, -EIO). Never NULL. */
const char *hs_strerror(int code);

#endif
