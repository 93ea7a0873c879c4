/*
 * proto.h -- the tieredd control protocol, version 2 (docs/PROTOCOL.md):
 * framing, one encoder and one decoder for every message, blocking
 * send/receive with a deadline, and the client's half of the handshake.
 *
 * Shared by the library (lib/remote_fabric.c) and the server (server/);
 * depends on nothing but libc and lib/sha256.c.  Decoders trust nothing:
 * every length is checked against the bytes actually there, and a message
 * must be consumed exactly.
 */
#ifndef TIERED_PROTO_H
#define TIERED_PROTO_H

#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTO_HIDDEN __attribute__((visibility("hidden")))

#define TDP_MAGIC 0x31504454u /* "TDP1" as little-endian bytes */
/*
 * Two numbers: the header's, which names the framing (stays 1 while the
 * header is laid out as now), and the message set's, negotiated by HELLO
 * and CHALLENGE.  Version 2 is version 1 with draining (DRAIN_REQ, DRAIN,
 * STATS' draining field) and the heartbeat's unanswered STATS_REQ.
 */
#define TDP_FRAME_VERSION 1
#define TDP_VERSION 2
#define TDP_HDR_LEN 12
#define TDP_MAX_PAYLOAD 4096
#define TDP_MAX_MSG (TDP_HDR_LEN + TDP_MAX_PAYLOAD)
#define TDP_NONCE_LEN 32
#define TDP_MAC_LEN 32
#define TDP_STR_MAX 255	      /* longest string field */
#define TDP_ADDR_MAX 512      /* longest fabric address */
#define TDP_GRANULE (2ULL << 20) /* leases are whole multiples of this */
#define TDP_HANDSHAKE_MS 5000 /* a client must be welcomed within this */
#define TDP_DEFAULT_PORT 7411
#define TDP_SECRET_MIN 16
#define TDP_SECRET_MAX 256

enum tdp_type {
	TDP_HELLO = 1,
	TDP_CHALLENGE = 2,
	TDP_AUTH = 3,
	TDP_WELCOME = 4,
	TDP_LEASE_REQ = 5,
	TDP_LEASE = 6,
	TDP_RELEASE = 7,
	TDP_OK = 8,
	TDP_STATS_REQ = 9,
	TDP_STATS = 10,
	TDP_REPORT = 11,
	TDP_ERROR = 12,
	TDP_DRAIN_REQ = 13,
	TDP_DRAIN = 14,
	TDP_TYPE_MAX = 14,
};

/* The mode of DRAIN_REQ (start or stop draining) and of DRAIN (draining, or cancelled). */
enum tdp_drain_mode { TDP_DRAIN_OFF = 0, TDP_DRAIN_ON = 1 };

struct tdp_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len; /* payload bytes after the header */
};

struct tdp_stats {
	uint64_t capacity, leased, clients, leases;
	uint64_t bytes_written, bytes_read, errors, refusals;
	uint64_t draining; /* 1 while the server drains (tieredd --drain), else 0 */
};

/* One decoded message; strings are NUL-terminated here, not on the wire. */
struct tdp_msg {
	uint16_t type;
	union {
		struct {
			uint16_t min_version, max_version;
			uint8_t nonce[TDP_NONCE_LEN];
			uint32_t pid;
			char name[TDP_STR_MAX + 1];
		} hello;
		struct {
			uint16_t version;
			uint8_t nonce[TDP_NONCE_LEN];
		} challenge;
		struct {
			uint8_t mac[TDP_MAC_LEN];
		} auth;
		struct {
			uint8_t mac[TDP_MAC_LEN];
			uint64_t client_id, capacity, client_limit;
			char provider[TDP_STR_MAX + 1];
			uint16_t addr_len;
			uint8_t addr[TDP_ADDR_MAX];
		} welcome;
		struct {
			uint64_t bytes;
		} lease_req;
		struct {
			uint64_t id, raddr, key, len;
		} lease;
		struct {
			uint64_t id;
		} release;
		struct tdp_stats stats;
		struct {
			uint64_t bytes_written, bytes_read;
		} report;
		struct {
			uint32_t code; /* a positive errno */
			char msg[TDP_STR_MAX + 1];
		} error;
		struct {
			uint32_t mode; /* enum tdp_drain_mode */
		} drain; /* DRAIN_REQ and DRAIN */
	} u;
};

/* "HELLO", "LEASE_REQ", ...; "unknown" for anything else. */
PROTO_HIDDEN const char *tdp_type_name(unsigned type);

/* Write a header for a payload of len bytes into p[0..12). */
PROTO_HIDDEN void tdp_put_hdr(uint8_t *p, uint16_t type, uint32_t len);
/*
 * Decode and check a header: magic, version, a known type, and a payload
 * length the type allows.  0 or -EPROTO with err saying what is wrong.
 */
PROTO_HIDDEN int tdp_check_hdr(const uint8_t *p, struct tdp_hdr *h, char *err, size_t errlen);

/*
 * Encode m (header and payload) into buf.  Returns the message's length, or
 * -EINVAL (unknown type, string or address too long) or -EMSGSIZE (cap too small).
 */
PROTO_HIDDEN ssize_t tdp_encode(const struct tdp_msg *m, uint8_t *buf, size_t cap);
/* Decode the payload p[0..len) of a message of type; 0 or -EPROTO with err. */
PROTO_HIDDEN int tdp_decode(uint16_t type, const uint8_t *p, size_t len, struct tdp_msg *m,
			    char *err, size_t errlen);

/* Send a whole buffer within timeout_ms (-1: no limit); 0 or -ETIMEDOUT, -EPIPE, ... */
PROTO_HIDDEN int tdp_send_all(int fd, const void *buf, size_t len, int timeout_ms);
/* Encode and send m. */
PROTO_HIDDEN int tdp_send_msg(int fd, const struct tdp_msg *m, int timeout_ms);
/*
 * Receive one message within timeout_ms.  0; -ECONNRESET when the peer
 * closed; -ETIMEDOUT; -EPROTO for a malformed message (err says how).
 */
PROTO_HIDDEN int tdp_recv_msg(int fd, struct tdp_msg *m, int timeout_ms, char *err,
			      size_t errlen);

/* HMAC-SHA256(secret, "tdp1-client" || server_nonce || client_nonce): the AUTH proof. */
PROTO_HIDDEN void tdp_mac_client(const void *secret, size_t slen,
				 const uint8_t snonce[TDP_NONCE_LEN],
				 const uint8_t cnonce[TDP_NONCE_LEN], uint8_t out[TDP_MAC_LEN]);
/* HMAC-SHA256(secret, "tdp1-server" || client_nonce || server_nonce): the WELCOME proof. */
PROTO_HIDDEN void tdp_mac_server(const void *secret, size_t slen,
				 const uint8_t cnonce[TDP_NONCE_LEN],
				 const uint8_t snonce[TDP_NONCE_LEN], uint8_t out[TDP_MAC_LEN]);

/*
 * The verbs data path (WELCOME provider "rdma-rc", docs/PROTOCOL.md).
 * The WELCOME address: u8 kind (4: IPv4), the IPv4 address (4 bytes,
 * network order), u16 rdma_cm port (little-endian), a 32-byte nonce; 39
 * bytes.  Every RC queue pair a client connects carries private data:
 * u32 magic "TQP1", u64 client_id, bytes[32] proof =
 * HMAC-SHA256(secret, "tdp1-qp" || client_id (u64) || nonce); 44 bytes,
 * followed by whatever padding the CM adds (ignored).  A rejected connect
 * carries u32 magic "TQP1", u32 errno: why.
 */
#define TDP_RC_PROVIDER "rdma-rc"
#define TDP_RC_ADDR_LEN 39
#define TDP_RC_KIND_IPV4 4
#define TDP_QP_MAGIC 0x31505154u /* "TQP1" as little-endian bytes */
#define TDP_QP_PDATA_LEN 44
#define TDP_QP_REJECT_LEN 8

struct tdp_rc_addr {
	uint8_t ipv4[4]; /* network order, as in struct in_addr */
	uint16_t port;
	uint8_t nonce[TDP_NONCE_LEN];
};

/* HMAC-SHA256(secret, "tdp1-qp" || client_id || nonce): a QP's proof. */
PROTO_HIDDEN void tdp_mac_qp(const void *secret, size_t slen, uint64_t client_id,
			     const uint8_t nonce[TDP_NONCE_LEN], uint8_t out[TDP_MAC_LEN]);
/* Encode the rdma-rc WELCOME address into buf[TDP_RC_ADDR_LEN]. */
PROTO_HIDDEN void tdp_rc_addr_put(uint8_t *buf, const struct tdp_rc_addr *a);
/* Decode it: 0, or -EPROTO with err saying what is wrong. */
PROTO_HIDDEN int tdp_rc_addr_get(const uint8_t *buf, size_t len, struct tdp_rc_addr *a,
				 char *err, size_t errlen);
/* Encode a QP's private data into buf[TDP_QP_PDATA_LEN]. */
PROTO_HIDDEN void tdp_qp_pdata_put(uint8_t *buf, uint64_t client_id,
				   const uint8_t proof[TDP_MAC_LEN]);
/* Decode it (len may be larger: CM padding); 0, or -EPROTO with err. */
PROTO_HIDDEN int tdp_qp_pdata_get(const void *buf, size_t len, uint64_t *client_id,
				  uint8_t proof[TDP_MAC_LEN], char *err, size_t errlen);
/* A rejection's private data: encode buf[TDP_QP_REJECT_LEN]; decode gives the errno or 0. */
PROTO_HIDDEN void tdp_qp_reject_put(uint8_t *buf, int code);
PROTO_HIDDEN int tdp_qp_reject_get(const void *buf, size_t len);

/*
 * TCP keepalive after idle_s seconds of silence, a probe every intvl_s, cnt
 * probes; unacknowledged data times out after as long: a peer whose machine
 * vanished (no FIN) shows as a socket error within seconds, not hours.
 */
PROTO_HIDDEN void tdp_keepalive(int fd, int idle_s, int intvl_s, int cnt);

/* Fill buf with n random bytes from getrandom(2); 0 or a negative errno. */
PROTO_HIDDEN int tdp_random(void *buf, size_t n);
/* "1 GiB", "64 MiB", "3 KiB", "100 bytes"; one decimal when not whole ("1.5 GiB"). */
PROTO_HIDDEN void tdp_size_text(uint64_t v, char *buf, size_t len);

/*
 * The client side.  tdp_connect opens a TCP connection (SOCK_CLOEXEC,
 * nonblocking, TCP_NODELAY, keepalive: tdp_keepalive(fd, 10, 2, 3)) to an IPv4 host or name within timeout_ms.
 * tdp_handshake runs HELLO .. WELCOME, proves the secret and checks the
 * server's proof; *welcome receives the WELCOME.  tdp_request sends req
 * and waits (timeout_ms in all) for a reply of type want; an ERROR reply
 * returns -code with the server's message in err.  A DRAIN notice that
 * arrives meanwhile is no reply: it is skipped, its mode stored in
 * *drain_notice (when not NULL; the last one wins), and the wait goes on.
 * All return 0 or a negative errno.
 */
PROTO_HIDDEN int tdp_connect(const char *host, uint16_t port, int timeout_ms, int *fd, char *err,
			     size_t errlen);
PROTO_HIDDEN int tdp_handshake(int fd, const void *secret, size_t slen, const char *name,
			       struct tdp_msg *welcome, int timeout_ms, char *err, size_t errlen);
PROTO_HIDDEN int tdp_request(int fd, const struct tdp_msg *req, uint16_t want,
			     struct tdp_msg *reply, int timeout_ms, char *err, size_t errlen,
			     int *drain_notice);

/*
 * log_line -- one line "<prog>: <level>: msg\n" to stderr in one write(2),
 * so lines of different threads never mix; never allocates.  level 0..3 is
 * error, warn, info, debug.  Shared by the library's tlog and tieredd's slog.
 */
void log_line(const char *prog, int level, const char *fmt, va_list ap)
	__attribute__((visibility("hidden"), format(printf, 3, 0)));

#endif /* TIERED_PROTO_H */
