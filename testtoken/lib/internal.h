/*
 * internal.h: shared by the files of libqpki-testtoken, the PKCS#11 client
 * library of the qpki test token. Every PKCS#11 call is forwarded to the
 * token daemon (qpki-testtokend) over a Unix socket; this library keeps no
 * token state of its own beyond the connections.
 *
 * Wire format (both directions): frames of a 4-byte big-endian length and a
 * payload of at most WIRE_MAX_FRAME bytes. A payload is a sequence of typed
 * items: 'U' followed by an 8-byte big-endian integer, or 'B' followed by a
 * 4-byte big-endian length and that many bytes. A request is U(op) and the
 * op's arguments; a reply is U(rv) and, for the rv the op documents, its
 * results. cmd/qpki-testtokend/wire.go is the other side.
 */
#ifndef QPKI_TESTTOKEN_INTERNAL_H
#define QPKI_TESTTOKEN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pkcs11_32.h"

#define QPKI_EXPORT __attribute__((visibility("default")))

#define WIRE_VERSION 1
#define WIRE_MAX_FRAME (4u << 20)
#define WIRE_MAX_DATA (1u << 20)   /* data to sign or verify, ciphertexts */
#define WIRE_MAX_ATTR (64u << 10)  /* one attribute value or mechanism parameter */
#define WIRE_MAX_TEMPLATE 256      /* attributes in one template */
#define WIRE_MAX_PIN 255
#define WIRE_MAX_HANDLES 4096      /* handles returned by one C_FindObjects */
#define WIRE_MAX_LIST 4096         /* slots or mechanisms in a list */

enum wire_op {
	OP_HELLO = 1,          /* U version, B app id, U sizeof(CK_ULONG), U pid -> U epoch */
	OP_SLOT_LIST = 2,      /* U present -> U n, U slot... */
	OP_SLOT_INFO = 3,      /* U slot -> B desc, B manufacturer, U flags, U hw, U fw */
	OP_TOKEN_INFO = 4,     /* U slot -> B label, B manufacturer, B model, B serial, U flags, 10 x U counters, U hw, U fw, B utc */
	OP_MECH_LIST = 5,      /* U slot -> U n, U mech... */
	OP_MECH_INFO = 6,      /* U slot, U mech -> U min, U max, U flags */
	OP_INIT_TOKEN = 7,     /* U slot, B so pin, B label */
	OP_INIT_PIN = 8,       /* U session, B pin */
	OP_SET_PIN = 9,        /* U session, B old, B new */
	OP_OPEN_SESSION = 10,  /* U slot, U flags -> U session */
	OP_CLOSE_SESSION = 11, /* U session */
	OP_CLOSE_ALL = 12,     /* U slot */
	OP_SESSION_INFO = 13,  /* U session -> U slot, U state, U flags, U device error */
	OP_LOGIN = 14,         /* U session, U user type, B pin */
	OP_LOGOUT = 15,        /* U session */
	OP_DESTROY = 16,       /* U session, U object */
	OP_GET_ATTRS = 17,     /* U session, U object, U n, U type... -> U n, (U status, B value)... */
	OP_SET_ATTRS = 18,     /* U session, U object, T template */
	OP_FIND_INIT = 19,     /* U session, T template */
	OP_FIND = 20,          /* U session, U max -> U n, U object... */
	OP_FIND_FINAL = 21,    /* U session */
	OP_GEN_KEYPAIR = 22,   /* U session, M mechanism, T public, T private -> U public, U private */
	OP_SIGN_INIT = 23,     /* U session, M mechanism, U key */
	OP_SIGN = 24,          /* U session, B data, U mode, U capacity -> U length, B signature */
	OP_VERIFY_INIT = 25,   /* U session, M mechanism, U key */
	OP_VERIFY = 26,        /* U session, B data, B signature (mode abort: U session, B, B, U 1) */
	OP_ENCAPSULATE = 27,   /* U session, M mechanism, U key, T template, U mode, U capacity -> U length, B ciphertext, U key */
	OP_DECAPSULATE = 28,   /* U session, M mechanism, U key, T template, B ciphertext -> U key */
};

/* The mode of OP_SIGN and OP_ENCAPSULATE. */
enum wire_mode {
	MODE_LENGTH = 0, /* return the output length only */
	MODE_OUTPUT = 1, /* produce output of at most the capacity */
	MODE_ABORT = 2,  /* end the operation (the caller's arguments were bad) */
};

/* Per-attribute status in the reply of OP_GET_ATTRS. */
enum wire_attr_status {
	ATTR_OK = 0,
	ATTR_SENSITIVE = 1,
	ATTR_INVALID = 2,
};

/* Mechanism parameter kinds (M = U type, U kind, ...). */
enum wire_param {
	PARAM_NONE = 0,
	PARAM_SIGN_CONTEXT = 1, /* U hedge, B context */
	PARAM_RAW = 2,          /* B bytes */
};

struct wbuf {
	unsigned char *p;
	size_t len, cap;
	int err;
};

void wb_init(struct wbuf *w, uint64_t op);
void wb_free(struct wbuf *w);
void wb_u64(struct wbuf *w, uint64_t v);
void wb_bytes(struct wbuf *w, const void *p, size_t n);

struct rbuf {
	const unsigned char *p;
	size_t len;
	int err;
};

uint64_t rb_u64(struct rbuf *r);
const unsigned char *rb_bytes(struct rbuf *r, size_t *n);

/* reply owns the buffer of one reply frame; r reads what follows the rv. */
struct reply {
	unsigned char *buf;
	struct rbuf r;
};

void reply_free(struct reply *rep);

/*
 * wire_call sends req and reads the reply. It returns the daemon's rv, or,
 * when the daemon cannot be reached, CKR_DEVICE_REMOVED for calls on a
 * session and CKR_DEVICE_ERROR for the others. rep is valid (and must be
 * freed) whatever the result.
 */
CK_RV wire_call(struct wbuf *req, struct reply *rep, int on_session);

CK_RV wire_initialize(void);
CK_RV wire_finalize(void);
int wire_initialized(void);

#endif
