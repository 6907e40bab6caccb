/*
 * fuzz.c: runs a byte string as a sequence of PKCS#11 calls. Each step
 * reads an operation and its arguments from the bytes; handles come from
 * earlier results or are made up. The library must never crash, must never
 * report an internal failure of its own or of the daemon
 * (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR, CKR_FUNCTION_FAILED,
 * CKR_HOST_MEMORY), and must keep the output conventions.
 */
#include <stdio.h>
#include <string.h>

#include "driver.h"

struct prog {
	const unsigned char *p;
	size_t n, i;
};

static unsigned next(struct prog *g)
{
	return g->i < g->n ? g->p[g->i++] : 0;
}

static CK_ULONG next_ulong(struct prog *g)
{
	CK_ULONG v = 0;
	for (int k = 0; k < 4; k++)
		v = v << 8 | next(g);
	return v;
}

#define MAX_SESS 8
#define MAX_OBJ 16

struct state {
	CK_SLOT_ID slot;
	const char *pin;
	CK_SESSION_HANDLE sess[MAX_SESS];
	int nsess;
	CK_OBJECT_HANDLE obj[MAX_OBJ];
	CK_MECHANISM_TYPE gen[MAX_OBJ]; /* the key-pair mechanism that made obj[i], or 0 */
	int isPriv[MAX_OBJ];
	int nobj;
	CK_BYTE buf[70000];
};

static CK_SESSION_HANDLE pick_session(struct prog *g, struct state *st)
{
	unsigned c = next(g);
	if (c < 16)
		return (CK_SESSION_HANDLE)next_ulong(g); /* made up */
	if (st->nsess == 0)
		return 0;
	return st->sess[c % st->nsess];
}

static CK_OBJECT_HANDLE pick_object(struct prog *g, struct state *st)
{
	unsigned c = next(g);
	if (c < 16)
		return (CK_OBJECT_HANDLE)next_ulong(g);
	if (st->nobj == 0)
		return 1;
	return st->obj[c % st->nobj];
}

static void keep_key(struct state *st, CK_OBJECT_HANDLE h, CK_MECHANISM_TYPE gen, int priv)
{
	int i = st->nobj < MAX_OBJ ? st->nobj++ : (int)(h % MAX_OBJ);
	st->obj[i] = h;
	st->gen[i] = gen;
	st->isPriv[i] = priv;
}

static void keep_object(struct state *st, CK_OBJECT_HANDLE h) { keep_key(st, h, 0, 0); }

/* pick_key returns, most of the time, a key made by gen (private or not). */
static CK_OBJECT_HANDLE pick_key(struct prog *g, struct state *st, CK_MECHANISM_TYPE gen, int priv)
{
	if (next(g) % 4 == 0)
		return pick_object(g, st);
	int start = next(g) % MAX_OBJ;
	for (int k = 0; k < st->nobj; k++) {
		int i = (start + k) % st->nobj;
		if (st->gen[i] == gen && st->isPriv[i] == priv)
			return st->obj[i];
	}
	return pick_object(g, st);
}

static const CK_MECHANISM_TYPE mechs[] = {0x0F, 0x17, 0x1C, 0x1D, 0x2D, 0x2E, 0x1040, 0x1041, 0x250, 0x1, 0xFFFFFFFF};
static const CK_ATTRIBUTE_TYPE attr_types[] = {0x0, 0x1, 0x2, 0x3, 0x4, 0x11, 0x100, 0x102, 0x103, 0x108, 0x10A,
	0x129, 0x161, 0x162, 0x180, 0x181, 0x61D, 0x633, 0x634, 0x637, 0x40000600, 0x40000211, 0x7FFFFFFF};

/* Operations by weight: the cryptography often, the resets (C_Finalize,
 * C_CloseSession, C_Logout, C_CloseAllSessions) rarely. */
static const unsigned char weighted_ops[] = {
	0, 1, 2, 3, 4, 4, 4, 5, 6, 6, 6, 7, 8, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 12, 12, 12,
	13, 14, 15, 16, 16, 16, 17, 18, 18, 18, 19, 19, 19, 20, 21, 22, 22, 23, 24, 25,
};

static CK_MECHANISM_TYPE pick_mech(struct prog *g) { return mechs[next(g) % (sizeof(mechs) / sizeof(mechs[0]))]; }
static CK_ATTRIBUTE_TYPE pick_attr(struct prog *g) { return attr_types[next(g) % (sizeof(attr_types) / sizeof(attr_types[0]))]; }

/* A template of up to 4 attributes with values from the program. */
struct tmpl {
	CK_ATTRIBUTE a[4];
	CK_ULONG vals[4];
	CK_BYTE bytes[4][40];
	CK_ULONG n;
};

static void make_template(struct prog *g, struct tmpl *t)
{
	static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	t->n = next(g) % 2 ? 0 : next(g) % 5;
	for (CK_ULONG i = 0; i < t->n; i++) {
		CK_ATTRIBUTE *a = &t->a[i];
		a->type = pick_attr(g);
		switch (next(g) % 6) {
		case 0: /* a CK_ULONG */
			t->vals[i] = next(g) % 16;
			a->pValue = &t->vals[i];
			a->ulValueLen = sizeof(CK_ULONG);
			break;
		case 1: /* a CK_BBOOL */
			t->bytes[i][0] = next(g) & 1;
			a->pValue = t->bytes[i];
			a->ulValueLen = 1;
			break;
		case 2: /* a curve */
			memcpy(t->bytes[i], p256, sizeof(p256));
			a->pValue = t->bytes[i];
			a->ulValueLen = sizeof(p256);
			break;
		case 3: /* NULL with a length */
			a->pValue = NULL;
			a->ulValueLen = next(g) % 3;
			break;
		default: { /* bytes of some length */
			CK_ULONG len = next(g) % sizeof(t->bytes[i]);
			for (CK_ULONG k = 0; k < len; k++)
				t->bytes[i][k] = next(g);
			a->pValue = t->bytes[i];
			a->ulValueLen = len;
		}
		}
	}
}

struct mech {
	CK_MECHANISM m;
	CK_SIGN_ADDITIONAL_CONTEXT ctx;
	CK_BYTE ctxbytes[300];
};

static CK_MECHANISM *make_mech(struct prog *g, struct mech *m, CK_MECHANISM_TYPE type)
{
	m->m.mechanism = type;
	m->m.pParameter = NULL;
	m->m.ulParameterLen = 0;
	switch (next(g) % 8) {
	case 0:
		return NULL;
	case 1:
	case 2: {
		CK_ULONG len = next(g) % 4 == 0 ? 256 + next(g) % 40 : next(g) % 32;
		for (CK_ULONG k = 0; k < len; k++)
			m->ctxbytes[k] = next(g);
		m->ctx.hedgeVariant = next(g) % 4;
		m->ctx.pContext = len && next(g) % 8 ? m->ctxbytes : NULL;
		m->ctx.ulContextLen = len;
		m->m.pParameter = &m->ctx;
		m->m.ulParameterLen = next(g) % 8 ? sizeof(m->ctx) : next(g) % sizeof(m->ctx);
		break;
	}
	case 3:
		m->m.ulParameterLen = next(g) % 4; /* a length without a parameter */
		break;
	}
	return &m->m;
}

static int internal_failure(CK_RV rv)
{
	return rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_ERROR || rv == CKR_FUNCTION_FAILED || rv == CKR_HOST_MEMORY;
}

/* capi_ok counts the calls of each operation that returned CKR_OK. */
unsigned long capi_ok[CAPI_OPS];

int capi_run(const unsigned char *p, size_t n, CK_SLOT_ID slot, const char *pin, char *msg, size_t msglen)
{
	static struct state st; /* large: not on the stack */
	struct prog g = {p, n, 0};
	memset(&st, 0, sizeof(st));
	st.slot = slot;
	st.pin = pin;
	msg[0] = '\0';
	F->C_Initialize(NULL);
	if (F->C_OpenSession(slot, CKF_SERIAL_SESSION | 2, NULL, NULL, &st.sess[0]) == CKR_OK) {
		st.nsess = 1;
		F->C_Login(st.sess[0], 1, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	}
	int steps = 0;
	while (g.i < g.n && steps++ < 200) {
		unsigned op = weighted_ops[next(&g) % sizeof(weighted_ops)];
		CK_RV rv = CKR_OK;
		CK_ULONG len = 0;
		CK_SESSION_HANDLE s = pick_session(&g, &st);
		struct tmpl t1, t2;
		struct mech m;
		switch (op) {
		case 0:
			rv = F->C_Initialize(NULL);
			break;
		case 1:
			rv = F->C_Finalize(NULL);
			if (rv == CKR_OK)
				st.nsess = 0;
			break;
		case 2: {
			CK_SLOT_ID slots[4];
			len = next(&g) % 6;
			rv = F->C_GetSlotList(next(&g) & 1, next(&g) & 1 ? slots : NULL, next(&g) % 8 ? &len : NULL);
			if (rv == CKR_OK && len > 64) {
				snprintf(msg, msglen, "step %d: C_GetSlotList says %lu slots", steps, len);
				return 1;
			}
			break;
		}
		case 3: {
			CK_TOKEN_INFO ti;
			rv = F->C_GetTokenInfo(next(&g) % 4 ? slot : next_ulong(&g), next(&g) % 8 ? &ti : NULL);
			break;
		}
		case 4: {
			CK_SESSION_HANDLE h;
			CK_FLAGS flags = next(&g) % 8 ? CKF_SERIAL_SESSION | (next(&g) & 2) : next_ulong(&g);
			rv = F->C_OpenSession(next(&g) % 8 ? slot : next(&g), flags, NULL, NULL, next(&g) % 8 ? &h : NULL);
			if (rv == CKR_OK && st.nsess < MAX_SESS)
				st.sess[st.nsess++] = h;
			break;
		}
		case 5:
			rv = F->C_CloseSession(s);
			break;
		case 6: {
			unsigned c = next(&g) % 16;
			const char *pw = c < 12 ? pin : "wrong-pin";
			CK_ULONG type = next(&g) % 8 ? 1 : next(&g) % 4;
			if (c == 15)
				rv = F->C_Login(s, type, NULL, 4);
			else
				rv = F->C_Login(s, type, (CK_UTF8CHAR_PTR)pw, strlen(pw));
			break;
		}
		case 7:
			rv = F->C_Logout(s);
			break;
		case 8: {
			CK_OBJECT_HANDLE pub = 0, priv = 0;
			CK_MECHANISM_TYPE type = mechs[next(&g) % 8 == 0 ? 8 : (next(&g) % 4) * 2];
			CK_ULONG set = next(&g) % 8 ? 1 + next(&g) % 3 : next(&g) % 16;
			make_template(&g, &t1);
			make_template(&g, &t2);
			if (next(&g) % 4)
				t1.n = 0;
			if (next(&g) % 4)
				t2.n = 0;
			/* Most key pairs get a parameter set or a curve, and stay in the session. */
			if (t1.n < 4 && next(&g) % 8) {
				static const CK_BYTE p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
				if (type == 0x1040) {
					memcpy(t1.bytes[t1.n], p384, sizeof(p384));
					t1.a[t1.n] = (CK_ATTRIBUTE){0x180, t1.bytes[t1.n], sizeof(p384)};
				} else {
					t1.vals[t1.n] = type == 0x2D ? 3 : set; /* SLH-DSA-SHA2-128f: the fast one */
					t1.a[t1.n] = (CK_ATTRIBUTE){0x61D, &t1.vals[t1.n], sizeof(CK_ULONG)};
				}
				t1.n++;
			}
			for (CK_ULONG i = 0; i < t1.n; i++)
				if (t1.a[i].type == 0x1) /* no token objects: keep the daemon's disk small */
					t1.a[i].type = 0x3;
			for (CK_ULONG i = 0; i < t2.n; i++)
				if (t2.a[i].type == 0x1)
					t2.a[i].type = 0x3;
			CK_MECHANISM *mp = make_mech(&g, &m, type);
			if (mp != NULL && mp->pParameter == NULL && mp->ulParameterLen != 0 && next(&g) & 1)
				mp->ulParameterLen = 0;
			rv = F->C_GenerateKeyPair(s, mp, t1.a, t1.n, t2.a, t2.n, next(&g) % 8 ? &pub : NULL, &priv);
			if (rv == CKR_OK) {
				keep_key(&st, pub, type, 0);
				keep_key(&st, priv, type, 1);
			}
			break;
		}
		case 9:
		case 11: {
			static const CK_MECHANISM_TYPE sigs[] = {0x1D, 0x2E, 0x1041}, gens[] = {0x1C, 0x2D, 0x1040};
			unsigned which = next(&g) % 3;
			CK_MECHANISM *mp = make_mech(&g, &m, next(&g) % 8 ? sigs[which] : pick_mech(&g));
			CK_OBJECT_HANDLE k = pick_key(&g, &st, gens[which], op == 9);
			rv = op == 9 ? F->C_SignInit(s, mp, k) : F->C_VerifyInit(s, mp, k);
			break;
		}
		case 10: {
			CK_ULONG dlen = next(&g) % 100;
			unsigned mode = next(&g) % 4;
			CK_ULONG cap = mode == 0 ? 0 : mode == 1 ? next(&g) * 10 : sizeof(st.buf);
			len = cap;
			rv = F->C_Sign(s, next(&g) % 16 ? st.buf : NULL, dlen, mode == 0 ? NULL : st.buf, next(&g) % 16 ? &len : NULL);
			if ((rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) && (len == 0 || len > 60000)) {
				snprintf(msg, msglen, "step %d: C_Sign gave length %lu", steps, len);
				return 1;
			}
			if (rv == CKR_BUFFER_TOO_SMALL && len <= cap) {
				snprintf(msg, msglen, "step %d: CKR_BUFFER_TOO_SMALL with room for %lu of %lu", steps, cap, len);
				return 1;
			}
			break;
		}
		case 12: {
			CK_ULONG dlen = next(&g) % 100, slen = next(&g) % 2 ? next(&g) * 20 : 64;
			rv = F->C_Verify(s, next(&g) % 16 ? st.buf : NULL, dlen, st.buf, slen);
			break;
		}
		case 13:
			make_template(&g, &t1);
			rv = F->C_FindObjectsInit(s, next(&g) % 16 ? t1.a : NULL, t1.n);
			break;
		case 14: {
			CK_OBJECT_HANDLE hs[8];
			CK_ULONG max = next(&g) % 10;
			rv = F->C_FindObjects(s, max <= 8 ? hs : NULL, max, next(&g) % 16 ? &len : NULL);
			if (rv == CKR_OK && len > max) {
				snprintf(msg, msglen, "step %d: C_FindObjects returned %lu > %lu handles", steps, len, max);
				return 1;
			}
			for (CK_ULONG i = 0; rv == CKR_OK && i < len; i++)
				keep_object(&st, hs[i]);
			break;
		}
		case 15:
			rv = F->C_FindObjectsFinal(s);
			break;
		case 16: {
			CK_ATTRIBUTE a[3];
			CK_ULONG na = next(&g) % 4;
			for (CK_ULONG i = 0; i < na; i++) {
				a[i].type = pick_attr(&g);
				unsigned c = next(&g) % 4;
				a[i].pValue = c == 0 ? NULL : st.buf + i * 20000;
				a[i].ulValueLen = c == 1 ? next(&g) % 8 : 20000;
			}
			rv = F->C_GetAttributeValue(s, pick_object(&g, &st), next(&g) % 16 ? a : NULL, na);
			for (CK_ULONG i = 0; (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_SENSITIVE ||
						     rv == CKR_ATTRIBUTE_TYPE_INVALID) && i < na; i++) {
				if (a[i].ulValueLen != CK_UNAVAILABLE_INFORMATION && a[i].ulValueLen > 20000) {
					snprintf(msg, msglen, "step %d: attribute 0x%lx of %lu bytes", steps, a[i].type, a[i].ulValueLen);
					return 1;
				}
			}
			break;
		}
		case 17:
			rv = F->C_DestroyObject(s, pick_object(&g, &st));
			break;
		case 18: {
			CK_OBJECT_HANDLE k = 0;
			make_template(&g, &t1);
			CK_MECHANISM *mp = make_mech(&g, &m, next(&g) % 4 ? 0x17 : pick_mech(&g));
			unsigned mode = next(&g) % 3;
			len = mode == 1 ? next(&g) * 8 : sizeof(st.buf);
			rv = F->C_EncapsulateKey(s, mp, pick_key(&g, &st, 0x0F, 0), t1.a, t1.n, mode == 0 ? NULL : st.buf,
				next(&g) % 16 ? &len : NULL, &k);
			if (rv == CKR_OK && mode != 0)
				keep_object(&st, k);
			break;
		}
		case 19: {
			CK_OBJECT_HANDLE k = 0;
			make_template(&g, &t1);
			CK_MECHANISM *mp = make_mech(&g, &m, next(&g) % 4 ? 0x17 : pick_mech(&g));
			CK_ULONG clen = next(&g) % 2 ? 768 : next(&g) * 8;
			rv = F->C_DecapsulateKey(s, mp, pick_key(&g, &st, 0x0F, 1), t1.a, t1.n, st.buf, clen, next(&g) % 16 ? &k : NULL);
			if (rv == CKR_OK)
				keep_object(&st, k);
			break;
		}
		case 20: {
			CK_SESSION_INFO si;
			rv = F->C_GetSessionInfo(s, next(&g) % 16 ? &si : NULL);
			break;
		}
		case 21: {
			CK_MECHANISM_INFO mi;
			rv = F->C_GetMechanismInfo(slot, pick_mech(&g), next(&g) % 16 ? &mi : NULL);
			break;
		}
		case 22:
			make_template(&g, &t1);
			rv = F->C_SetAttributeValue(s, pick_object(&g, &st), t1.a, t1.n);
			break;
		case 23:
			rv = F->C_CloseAllSessions(next(&g) % 8 ? slot : next_ulong(&g));
			break;
		case 24: {
			CK_INTERFACE *ip;
			CK_VERSION v = {next(&g) % 4, next(&g) % 3 == 0 ? 40 : next(&g) % 3};
			rv = F->C_GetInterface(next(&g) % 4 ? (CK_UTF8CHAR_PTR) "PKCS 11" : (CK_UTF8CHAR_PTR) "x",
				next(&g) % 2 ? &v : NULL, next(&g) % 16 ? &ip : NULL, next(&g) % 8 ? 0 : 1);
			break;
		}
		default: {
			CK_MECHANISM_INFO mi;
			CK_MECHANISM_TYPE list[2];
			len = next(&g) % 3;
			rv = F->C_GetMechanismList(slot, next(&g) % 2 ? list : NULL, &len);
			if (rv == CKR_BUFFER_TOO_SMALL && len != 8) {
				snprintf(msg, msglen, "step %d: C_GetMechanismList needs %lu", steps, len);
				return 1;
			}
			(void)mi;
		}
		}
		if (rv == CKR_OK)
			capi_ok[op]++;
		if (internal_failure(rv)) {
			snprintf(msg, msglen, "step %d: operation %u returned 0x%lx", steps, op, rv);
			return 1;
		}
	}
	F->C_Finalize(NULL);
	/* The daemon still answers. */
	CK_RV rv = F->C_Initialize(NULL);
	CK_ULONG count = 0;
	if (rv == CKR_OK)
		rv = F->C_GetSlotList(CK_TRUE, NULL, &count);
	F->C_Finalize(NULL);
	if (rv != CKR_OK) {
		snprintf(msg, msglen, "after the sequence: 0x%lx", rv);
		return 1;
	}
	return 0;
}
