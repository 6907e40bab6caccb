/*
 * p11v3.h: the PKCS#11 3.x calls that github.com/miekg/pkcs11 (2.40) cannot
 * make: C_SignInit with a CK_SIGN_ADDITIONAL_CONTEXT parameter, and
 * C_EncapsulateKey / C_DecapsulateKey; and C_SignInit+C_Sign in one call
 * from Go, where miekg/pkcs11 makes two. They go through the function list
 * of C_GetInterface (or C_GetFunctionList) of the module miekg/pkcs11
 * already loaded, so they share its sessions and login.
 */
#ifndef QPKI_HSM_P11V3_H
#define QPKI_HSM_P11V3_H

#include <stddef.h>

typedef unsigned long qp_ulong;

typedef struct {
	unsigned char major, minor;
} qp_version;

/*
 * A function list seen as its version and its function pointers, in the
 * order of CK_FUNCTION_LIST_3_2 (OASIS pkcs11f.h); a 2.40 list has the
 * first 68, a 3.0 list the first 92.
 */
typedef struct {
	qp_version version;
	void *fn[104];
} qp_function_list;

typedef struct {
	void *handle;
	qp_function_list *fl;
	int major, minor;
} qp_module;

int qp_open(const char *path, qp_module *m, char *err, size_t errlen);

qp_ulong qp_session_state(qp_module *m, qp_ulong session, qp_ulong *state);

/*
 * qp_sign_many signs count messages, laid end to end in data with their
 * lengths in lens, with one mechanism and key, in order and in one call
 * from Go, stopping at the first failure: *done is how many it signed,
 * and the return value the failure's (CKR_OK when all were signed). Each
 * signature is malloc'd into sigs[i], its length in siglens[i].
 *
 * qp_sign_many and qp_sign_with_context add nice_delta to the calling
 * thread's nice value while the module signs, when it is negative (a
 * larger share of the CPU) and the process may.
 */
qp_ulong qp_sign_many(qp_module *m, int nice_delta, qp_ulong session, qp_ulong mech, const unsigned char *param,
	qp_ulong paramlen, qp_ulong key, const unsigned char *data, const qp_ulong *lens, qp_ulong count,
	unsigned char **sigs, qp_ulong *siglens, qp_ulong *done);

qp_ulong qp_sign_with_context(qp_module *m, int nice_delta, qp_ulong session, qp_ulong mech, qp_ulong key,
	qp_ulong hedge, const unsigned char *ctx, qp_ulong ctxlen,
	const unsigned char *data, qp_ulong datalen, unsigned char **sig, qp_ulong *siglen);

/* qp_priority_probe returns 0 when this process may lower a thread's nice
 * value by -delta, else an errno value (-1: not supported here). */
int qp_priority_probe(int delta);

/* qp_thread_nice returns the calling thread's nice value. */
int qp_thread_nice(void);

qp_ulong qp_encapsulate(qp_module *m, qp_ulong session, qp_ulong mech, qp_ulong pub,
	unsigned char **ct, qp_ulong *ctlen, qp_ulong *secret);

qp_ulong qp_decapsulate(qp_module *m, qp_ulong session, qp_ulong mech, qp_ulong priv,
	const unsigned char *ct, qp_ulong ctlen, qp_ulong *secret);

#endif
