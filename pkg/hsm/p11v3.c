#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11v3.h"

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* PKCS#11 types and values used here (OASIS PKCS#11 3.2 pkcs11t.h). */
typedef struct {
	qp_ulong mechanism;
	void *pParameter;
	qp_ulong ulParameterLen;
} qp_mechanism;

typedef struct {
	qp_ulong type;
	void *pValue;
	qp_ulong ulValueLen;
} qp_attribute;

typedef struct {
	qp_ulong hedgeVariant;
	unsigned char *pContext;
	qp_ulong ulContextLen;
} qp_sign_additional_context;

typedef struct {
	unsigned char *pInterfaceName;
	void *pFunctionList;
	qp_ulong flags;
} qp_interface;

#define QP_CKR_OK 0x000UL
#define QP_CKR_HOST_MEMORY 0x002UL
#define QP_CKR_BUFFER_TOO_SMALL 0x150UL
#define QP_CKR_FUNCTION_NOT_SUPPORTED 0x054UL
#define QP_CKO_SECRET_KEY 0x04UL
#define QP_CKK_GENERIC_SECRET 0x10UL
#define QP_CKA_CLASS 0x000UL
#define QP_CKA_TOKEN 0x001UL
#define QP_CKA_KEY_TYPE 0x100UL
#define QP_CKA_SENSITIVE 0x103UL
#define QP_CKA_EXTRACTABLE 0x162UL

/* Positions in CK_FUNCTION_LIST_3_2. */
enum {
	FN_GET_SESSION_INFO = 15,
	FN_SIGN_INIT = 42,
	FN_SIGN = 43,
	FN_ENCAPSULATE_KEY = 92,
	FN_DECAPSULATE_KEY = 93,
};

typedef qp_ulong (*get_interface_fn)(unsigned char *, qp_version *, qp_interface **, qp_ulong);
typedef qp_ulong (*get_function_list_fn)(qp_function_list **);
typedef qp_ulong (*sign_init_fn)(qp_ulong, qp_mechanism *, qp_ulong);
typedef qp_ulong (*sign_fn)(qp_ulong, unsigned char *, qp_ulong, unsigned char *, qp_ulong *);
typedef qp_ulong (*encapsulate_fn)(qp_ulong, qp_mechanism *, qp_ulong, qp_attribute *, qp_ulong, unsigned char *, qp_ulong *, qp_ulong *);
typedef qp_ulong (*decapsulate_fn)(qp_ulong, qp_mechanism *, qp_ulong, qp_attribute *, qp_ulong, unsigned char *, qp_ulong, qp_ulong *);

int qp_open(const char *path, qp_module *m, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	/* The module is normally loaded already; dlopen returns its handle. */
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (h == NULL)
		h = dlopen(path, RTLD_NOW);
	if (h == NULL) {
		snprintf(err, errlen, "dlopen: %s", dlerror());
		return -1;
	}
	qp_function_list *fl = NULL;
	get_interface_fn gi = (get_interface_fn)dlsym(h, "C_GetInterface");
	if (gi != NULL) {
		static unsigned char name[] = "PKCS 11";
		qp_version v32 = {3, 2};
		qp_interface *iface = NULL;
		if (gi(name, &v32, &iface, 0) != QP_CKR_OK || iface == NULL)
			if (gi(name, NULL, &iface, 0) != QP_CKR_OK)
				iface = NULL;
		if (iface != NULL)
			fl = iface->pFunctionList;
	}
	if (fl == NULL) {
		get_function_list_fn gfl = (get_function_list_fn)dlsym(h, "C_GetFunctionList");
		if (gfl == NULL || gfl(&fl) != QP_CKR_OK)
			fl = NULL;
	}
	if (fl == NULL) {
		snprintf(err, errlen, "neither C_GetInterface nor C_GetFunctionList gives a function list");
		dlclose(h);
		return -1;
	}
	m->handle = h;
	m->fl = fl;
	m->major = fl->version.major;
	m->minor = fl->version.minor;
	return 0;
}

static int has_32(const qp_module *m)
{
	return m->major > 3 || (m->major == 3 && m->minor >= 2);
}

typedef qp_ulong (*get_session_info_fn)(qp_ulong, qp_ulong *);

qp_ulong qp_session_state(qp_module *m, qp_ulong session, qp_ulong *state)
{
	qp_ulong info[4] = {0}; /* CK_SESSION_INFO: slotID, state, flags, ulDeviceError */
	get_session_info_fn f = (get_session_info_fn)m->fl->fn[FN_GET_SESSION_INFO];
	qp_ulong rv = f(session, info);
	*state = info[1];
	return rv;
}

/*
 * init_and_sign runs C_SignInit and C_Sign (length, then signature) in
 * one call from Go: each return from C to Go may have to wait for the Go
 * scheduler, and under load that wait, paid once per call, was as long
 * as the signature itself.
 */
static qp_ulong init_and_sign(qp_module *m, qp_ulong session, qp_mechanism *mm, qp_ulong key,
	const unsigned char *data, qp_ulong datalen, unsigned char **sig, qp_ulong *siglen)
{
	*sig = NULL;
	*siglen = 0;
	sign_init_fn init = (sign_init_fn)m->fl->fn[FN_SIGN_INIT];
	sign_fn sign = (sign_fn)m->fl->fn[FN_SIGN];
	qp_ulong rv = init(session, mm, key);
	if (rv != QP_CKR_OK)
		return rv;
	qp_ulong n = 0;
	rv = sign(session, (unsigned char *)data, datalen, NULL, &n);
	if (rv != QP_CKR_OK)
		return rv;
	unsigned char *out = malloc(n ? n : 1);
	if (out == NULL) {
		/* End the operation: C_Sign with a NULL length pointer fails and ends it. */
		sign(session, NULL, 0, NULL, NULL);
		return QP_CKR_HOST_MEMORY;
	}
	rv = sign(session, (unsigned char *)data, datalen, out, &n);
	if (rv == QP_CKR_BUFFER_TOO_SMALL) {
		/* The length query under-reported (n is now the length needed); the
		 * operation is still active: ask again with the buffer it wants. */
		unsigned char *bigger = realloc(out, n ? n : 1);
		if (bigger == NULL) {
			free(out);
			sign(session, NULL, 0, NULL, NULL);
			return QP_CKR_HOST_MEMORY;
		}
		out = bigger;
		rv = sign(session, (unsigned char *)data, datalen, out, &n);
	}
	if (rv != QP_CKR_OK) {
		free(out);
		return rv;
	}
	*sig = out;
	*siglen = n;
	return QP_CKR_OK;
}

/*
 * A module that signs in software (SoftHSM2) signs on the calling thread,
 * which competes for the CPU with the rest of the process: the thread is
 * given a lower nice value (a larger share of the CPU) while it signs.
 * Linux keeps a nice value per thread. Lowering it needs CAP_SYS_NICE or
 * RLIMIT_NICE; nice_refused is the least negative delta refused so far (0:
 * none), and no delta at or below it is tried again.
 */
static int nice_refused;

static int raise_priority(int delta, int *old)
{
#ifdef __linux__
	int refused = __atomic_load_n(&nice_refused, __ATOMIC_RELAXED);
	if (delta >= 0 || (refused != 0 && delta <= refused))
		return 0;
	id_t tid = (id_t)syscall(SYS_gettid);
	errno = 0;
	int cur = getpriority(PRIO_PROCESS, tid);
	if (cur == -1 && errno != 0)
		return 0;
	if (setpriority(PRIO_PROCESS, tid, cur + delta) != 0) {
		if (errno == EPERM || errno == EACCES) {
			/* Keep the least negative refusal; racing stores may keep
			 * another, which only means one more try. */
			refused = __atomic_load_n(&nice_refused, __ATOMIC_RELAXED);
			if (refused == 0 || delta > refused)
				__atomic_store_n(&nice_refused, delta, __ATOMIC_RELAXED);
		}
		return 0;
	}
	*old = cur;
	return 1;
#else
	(void)delta;
	(void)old;
	return 0;
#endif
}

static void restore_priority(int old)
{
#ifdef __linux__
	/* Raising a nice value back is always permitted. */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), old);
#else
	(void)old;
#endif
}

int qp_priority_probe(int delta)
{
#ifdef __linux__
	int old;
	if (raise_priority(delta, &old)) {
		restore_priority(old);
		return 0;
	}
	int refused = __atomic_load_n(&nice_refused, __ATOMIC_RELAXED);
	return refused != 0 && delta <= refused ? EPERM : -1;
#else
	(void)delta;
	return -1;
#endif
}

int qp_thread_nice(void)
{
#ifdef __linux__
	return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
#else
	return 0;
#endif
}

static qp_ulong raised_init_and_sign(int nice_delta, qp_module *m, qp_ulong session, qp_mechanism *mm, qp_ulong key,
	const unsigned char *data, qp_ulong datalen, unsigned char **sig, qp_ulong *siglen)
{
	int old = 0;
	int raised = raise_priority(nice_delta, &old);
	qp_ulong rv = init_and_sign(m, session, mm, key, data, datalen, sig, siglen);
	if (raised)
		restore_priority(old);
	return rv;
}

qp_ulong qp_sign_many(qp_module *m, int nice_delta, qp_ulong session, qp_ulong mech, const unsigned char *param,
	qp_ulong paramlen, qp_ulong key, const unsigned char *data, const qp_ulong *lens, qp_ulong count,
	unsigned char **sigs, qp_ulong *siglens, qp_ulong *done)
{
	*done = 0;
	unsigned char *pcopy = NULL;
	if (paramlen) {
		if ((pcopy = malloc(paramlen)) == NULL)
			return QP_CKR_HOST_MEMORY;
	}
	int old = 0;
	int raised = raise_priority(nice_delta, &old);
	qp_ulong rv = QP_CKR_OK;
	for (qp_ulong i = 0; i < count; i++) {
		sigs[i] = NULL;
		siglens[i] = 0;
		/* A fresh copy each time: the module may have changed the last. */
		if (paramlen)
			memcpy(pcopy, param, paramlen);
		qp_mechanism mm = {mech, pcopy, paramlen};
		rv = init_and_sign(m, session, &mm, key, data, lens[i], &sigs[i], &siglens[i]);
		if (rv != QP_CKR_OK)
			break;
		data += lens[i];
		*done = i + 1;
	}
	if (raised)
		restore_priority(old);
	free(pcopy);
	return rv;
}

qp_ulong qp_sign_with_context(qp_module *m, int nice_delta, qp_ulong session, qp_ulong mech, qp_ulong key,
	qp_ulong hedge, const unsigned char *ctx, qp_ulong ctxlen,
	const unsigned char *data, qp_ulong datalen, unsigned char **sig, qp_ulong *siglen)
{
	*sig = NULL;
	*siglen = 0;
	/* Some modules keep the parameter until C_Sign: give them our own copy. */
	unsigned char *ctxcopy = malloc(ctxlen ? ctxlen : 1);
	if (ctxcopy == NULL)
		return QP_CKR_HOST_MEMORY;
	if (ctxlen)
		memcpy(ctxcopy, ctx, ctxlen);
	qp_sign_additional_context param = {hedge, ctxlen ? ctxcopy : NULL, ctxlen};
	qp_mechanism mm = {mech, &param, sizeof(param)};
	qp_ulong rv = raised_init_and_sign(nice_delta, m, session, &mm, key, data, datalen, sig, siglen);
	free(ctxcopy);
	return rv;
}

/* The shared secret becomes a session object that qpki reads and destroys. */
#define SECRET_TEMPLATE(t)                                                  \
	qp_ulong cls = QP_CKO_SECRET_KEY, kt = QP_CKK_GENERIC_SECRET;       \
	unsigned char no = 0, yes = 1;                                      \
	qp_attribute t[] = {                                                \
		{QP_CKA_CLASS, &cls, sizeof(cls)},                          \
		{QP_CKA_KEY_TYPE, &kt, sizeof(kt)},                         \
		{QP_CKA_TOKEN, &no, 1},                                     \
		{QP_CKA_SENSITIVE, &no, 1},                                 \
		{QP_CKA_EXTRACTABLE, &yes, 1},                              \
	}

qp_ulong qp_encapsulate(qp_module *m, qp_ulong session, qp_ulong mech, qp_ulong pub,
	unsigned char **ct, qp_ulong *ctlen, qp_ulong *secret)
{
	*ct = NULL;
	*ctlen = 0;
	if (!has_32(m))
		return QP_CKR_FUNCTION_NOT_SUPPORTED;
	SECRET_TEMPLATE(tmpl);
	qp_mechanism mm = {mech, NULL, 0};
	encapsulate_fn enc = (encapsulate_fn)m->fl->fn[FN_ENCAPSULATE_KEY];
	qp_ulong n = 0, key = 0;
	qp_ulong rv = enc(session, &mm, pub, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), NULL, &n, &key);
	if (rv != QP_CKR_OK)
		return rv;
	unsigned char *out = malloc(n ? n : 1);
	if (out == NULL)
		return QP_CKR_HOST_MEMORY;
	rv = enc(session, &mm, pub, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), out, &n, &key);
	if (rv != QP_CKR_OK) {
		free(out);
		return rv;
	}
	*ct = out;
	*ctlen = n;
	*secret = key;
	return QP_CKR_OK;
}

qp_ulong qp_decapsulate(qp_module *m, qp_ulong session, qp_ulong mech, qp_ulong priv,
	const unsigned char *ct, qp_ulong ctlen, qp_ulong *secret)
{
	if (!has_32(m))
		return QP_CKR_FUNCTION_NOT_SUPPORTED;
	SECRET_TEMPLATE(tmpl);
	qp_mechanism mm = {mech, NULL, 0};
	decapsulate_fn dec = (decapsulate_fn)m->fl->fn[FN_DECAPSULATE_KEY];
	return dec(session, &mm, priv, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), (unsigned char *)ct, ctlen, secret);
}
