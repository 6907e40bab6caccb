/*
 * driver.c: drives libqpki-testtoken through its PKCS#11 3.2 function list
 * for the tests of package capi: scripted checks of the return codes and
 * output conventions, and an interpreter that turns bytes into random call
 * sequences (bad pointers excepted: a PKCS#11 library may trust a non-NULL
 * pointer, so the sequences use NULL, short buffers, wrong lengths and
 * wrong handles instead).
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define CKR_KEY_TYPE_INCONSISTENT 0x63UL
#define CKR_OPERATION_ACTIVE 0x90UL
#define CKR_SIGNATURE_INVALID 0xC0UL
#define CKR_TEMPLATE_INCOMPLETE 0xD0UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKR_USER_NOT_LOGGED_IN 0x101UL

#define CKU_SO 0UL
#define CKU_USER 1UL
#define CKF_RW_SESSION 2UL
#define CKO_PUBLIC_KEY 2UL
#define CKO_PRIVATE_KEY 3UL
#define CKO_SECRET_KEY 4UL
#define CKK_GENERIC_SECRET 0x10UL
#define CKA_CLASS 0x0UL
#define CKA_TOKEN 0x1UL
#define CKA_LABEL 0x3UL
#define CKA_VALUE 0x11UL
#define CKA_KEY_TYPE 0x100UL
#define CKA_ID 0x102UL
#define CKA_SENSITIVE 0x103UL
#define CKA_SIGN 0x108UL
#define CKA_EXTRACTABLE 0x162UL
#define CKA_EC_PARAMS 0x180UL
#define CKA_PARAMETER_SET 0x61DUL
#define CKM_ML_KEM_KEY_PAIR_GEN 0x0FUL
#define CKM_ML_KEM 0x17UL
#define CKM_ML_DSA_KEY_PAIR_GEN 0x1CUL
#define CKM_SLH_DSA_KEY_PAIR_GEN 0x2DUL
#define CKM_EC_KEY_PAIR_GEN 0x1040UL
#define CKM_ECDSA 0x1041UL
#define CKM_SHA256 0x250UL
#define CKH_HEDGE_REQUIRED 1UL
#define CKH_DETERMINISTIC_REQUIRED 2UL

CK_FUNCTION_LIST_3_2 *capi_functions;

int capi_load(const char *path, char *err, size_t errlen)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "dlopen: %s", dlerror());
		return -1;
	}
	CK_C_GetInterface gi = (CK_C_GetInterface)dlsym(h, "C_GetInterface");
	CK_INTERFACE *iface = NULL;
	CK_VERSION v = {3, 2};
	if (gi == NULL || gi((CK_UTF8CHAR_PTR) "PKCS 11", &v, &iface, 0) != CKR_OK || iface == NULL) {
		snprintf(err, errlen, "no PKCS 11 3.2 interface");
		return -1;
	}
	F = iface->pFunctionList;
	return 0;
}

/* Scripted checks. */

static char *g_msg;
static size_t g_msglen;
static int g_failed;

static void fail(int line, const char *fmt, ...)
{
	if (g_failed++)
		return;
	int n = snprintf(g_msg, g_msglen, "driver.c:%d: ", line);
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < g_msglen)
		vsnprintf(g_msg + n, g_msglen - n, fmt, ap);
	va_end(ap);
}

#define EXPECT(call, want)                                                                 \
	do {                                                                               \
		CK_RV rv_ = (call);                                                        \
		if (rv_ != (CK_RV)(want)) {                                                \
			fail(__LINE__, "%s = 0x%lx, want 0x%lx", #call, rv_, (CK_RV)(want)); \
			return 1;                                                          \
		}                                                                          \
	} while (0)

#define REQUIRE(cond)                                              \
	do {                                                       \
		if (!(cond)) {                                     \
			fail(__LINE__, "%s does not hold", #cond); \
			return 1;                                  \
		}                                                  \
	} while (0)

static int gen_mldsa(CK_SESSION_HANDLE s, CK_ULONG set, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv)
{
	CK_MECHANISM m = {CKM_ML_DSA_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE pt[] = {{CKA_PARAMETER_SET, &set, sizeof(set)}};
	return F->C_GenerateKeyPair(s, &m, pt, 1, NULL, 0, pub, priv) == CKR_OK ? 0 : -1;
}

static int checks(CK_SLOT_ID slot, const char *pin)
{
	CK_ULONG n;
	CK_SLOT_ID slots[8];
	CK_SESSION_HANDLE s;
	CK_INFO info;
	CK_TOKEN_INFO ti;
	CK_C_INITIALIZE_ARGS args;
	CK_ULONG plen = strlen(pin);

	/* Before C_Initialize. */
	EXPECT(F->C_GetSlotList(CK_TRUE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_CRYPTOKI_NOT_INITIALIZED);
	EXPECT(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	memset(&args, 0, sizeof(args));
	args.pReserved = &args;
	EXPECT(F->C_Initialize(&args), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_Initialize(NULL), CKR_OK);
	EXPECT(F->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);

	/* Information and lists: the size-query convention. */
	EXPECT(F->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GetInfo(&info), CKR_OK);
	REQUIRE(info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 2);
	EXPECT(F->C_GetSlotList(CK_TRUE, NULL, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	REQUIRE(n > slot && n <= 8);
	CK_ULONG want = n;
	n = 0;
	EXPECT(F->C_GetSlotList(CK_TRUE, slots, &n), CKR_BUFFER_TOO_SMALL);
	REQUIRE(n == want);
	EXPECT(F->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	EXPECT(F->C_GetTokenInfo(1000, &ti), CKR_SLOT_ID_INVALID);
	EXPECT(F->C_GetTokenInfo(slot, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GetTokenInfo(slot, &ti), CKR_OK);
	EXPECT(F->C_GetMechanismList(slot, NULL, &n), CKR_OK);
	REQUIRE(n == 8);
	CK_MECHANISM_TYPE mechs[8];
	n = 2;
	EXPECT(F->C_GetMechanismList(slot, mechs, &n), CKR_BUFFER_TOO_SMALL);
	REQUIRE(n == 8);
	CK_MECHANISM_INFO mi;
	EXPECT(F->C_GetMechanismInfo(slot, CKM_SHA256, &mi), CKR_MECHANISM_INVALID);
	EXPECT(F->C_GetMechanismInfo(slot, CKM_ECDSA, NULL), CKR_ARGUMENTS_BAD);

	/* Sessions and login. */
	EXPECT(F->C_OpenSession(slot, 0, NULL, NULL, &s), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	EXPECT(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
	EXPECT(F->C_GetSessionInfo(0, NULL), CKR_ARGUMENTS_BAD);
	CK_SESSION_INFO si;
	EXPECT(F->C_GetSessionInfo(0, &si), CKR_SESSION_HANDLE_INVALID);
	EXPECT(F->C_GetSessionInfo((s & ~0xffffffffUL) | 0xfffffff0UL, &si), CKR_SESSION_HANDLE_INVALID);
	EXPECT(F->C_Login(s, CKU_USER, NULL, 4), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_Login(s, 7, (CK_UTF8CHAR_PTR)pin, plen), CKR_USER_TYPE_INVALID);
	EXPECT(F->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9), CKR_PIN_INCORRECT);
	CK_OBJECT_HANDLE pub, priv;
	CK_MECHANISM mg = {CKM_ML_DSA_KEY_PAIR_GEN, NULL, 0};
	CK_ULONG set44 = 1;
	CK_ATTRIBUTE pt[] = {{CKA_PARAMETER_SET, &set44, sizeof(set44)}};
	EXPECT(F->C_GenerateKeyPair(s, &mg, pt, 1, NULL, 0, &pub, &priv), CKR_USER_NOT_LOGGED_IN);
	EXPECT(F->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen), CKR_OK);
	EXPECT(F->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen), CKR_USER_ALREADY_LOGGED_IN);
	EXPECT(F->C_GetSessionInfo(s, &si), CKR_OK);
	REQUIRE(si.state == 3 /* CKS_RW_USER_FUNCTIONS */ && si.slotID == slot);

	/* Key generation. */
	EXPECT(F->C_GenerateKeyPair(s, &mg, pt, 1, NULL, 0, NULL, &priv), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GenerateKeyPair(s, NULL, pt, 1, NULL, 0, &pub, &priv), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GenerateKeyPair(s, &mg, NULL, 1, NULL, 0, &pub, &priv), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GenerateKeyPair(s, &mg, NULL, 0, NULL, 0, &pub, &priv), CKR_TEMPLATE_INCOMPLETE);
	CK_MECHANISM bad = {CKM_SHA256, NULL, 0};
	EXPECT(F->C_GenerateKeyPair(s, &bad, pt, 1, NULL, 0, &pub, &priv), CKR_MECHANISM_INVALID);
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE extractable[] = {{CKA_EXTRACTABLE, &yes, 1}};
	EXPECT(F->C_GenerateKeyPair(s, &mg, pt, 1, extractable, 1, &pub, &priv), CKR_ATTRIBUTE_VALUE_INVALID);
	CK_ULONG set9 = 9;
	CK_ATTRIBUTE pt9[] = {{CKA_PARAMETER_SET, &set9, sizeof(set9)}};
	EXPECT(F->C_GenerateKeyPair(s, &mg, pt9, 1, NULL, 0, &pub, &priv), CKR_ATTRIBUTE_VALUE_INVALID);
	EXPECT(F->C_GenerateKeyPair(s, &mg, pt, 1, NULL, 0, &pub, &priv), CKR_OK);

	/* Attributes: sensitive values, the size-query convention. */
	CK_BYTE buf[4096];
	CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
	EXPECT(F->C_GetAttributeValue(s, priv, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
	REQUIRE(a.ulValueLen == CK_UNAVAILABLE_INFORMATION);
	a.ulValueLen = 0;
	EXPECT(F->C_GetAttributeValue(s, pub, &a, 1), CKR_OK);
	REQUIRE(a.ulValueLen == 1312);
	a.pValue = buf;
	a.ulValueLen = 100;
	EXPECT(F->C_GetAttributeValue(s, pub, &a, 1), CKR_BUFFER_TOO_SMALL);
	REQUIRE(a.ulValueLen == CK_UNAVAILABLE_INFORMATION);
	a.ulValueLen = sizeof(buf);
	EXPECT(F->C_GetAttributeValue(s, pub, &a, 1), CKR_OK);
	REQUIRE(a.ulValueLen == 1312);
	CK_ATTRIBUTE two[] = {{0x7ffffff0UL, NULL, 0}, {CKA_SIGN, buf, 1}};
	EXPECT(F->C_GetAttributeValue(s, priv, two, 2), CKR_ATTRIBUTE_TYPE_INVALID);
	REQUIRE(two[0].ulValueLen == CK_UNAVAILABLE_INFORMATION && two[1].ulValueLen == 1 && buf[0] == CK_TRUE);
	EXPECT(F->C_GetAttributeValue(s, priv, NULL, 1), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GetAttributeValue(s, 987654, &a, 1), CKR_OBJECT_HANDLE_INVALID);

	/* Signatures with a context, the size query, and operation state. */
	CK_BYTE msg[] = "message";
	CK_BYTE sig[8000];
	CK_ULONG siglen = 0;
	CK_SIGN_ADDITIONAL_CONTEXT ctx = {0, (CK_BYTE_PTR) "ctx", 3};
	CK_MECHANISM ms = {CKM_ML_DSA, &ctx, sizeof(ctx)};
	CK_MECHANISM badlen = {CKM_ML_DSA, &ctx, sizeof(ctx) - 1};
	CK_SIGN_ADDITIONAL_CONTEXT longctx = {0, buf, 256};
	CK_MECHANISM toolong = {CKM_ML_DSA, &longctx, sizeof(longctx)};
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};
	EXPECT(F->C_Sign(s, msg, 7, NULL, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT(F->C_SignInit(s, &ms, 987654), CKR_KEY_HANDLE_INVALID);
	EXPECT(F->C_SignInit(s, &ms, pub), CKR_KEY_TYPE_INCONSISTENT);
	EXPECT(F->C_SignInit(s, &ecdsa, priv), CKR_KEY_TYPE_INCONSISTENT);
	EXPECT(F->C_SignInit(s, &badlen, priv), CKR_MECHANISM_PARAM_INVALID);
	EXPECT(F->C_SignInit(s, &toolong, priv), CKR_MECHANISM_PARAM_INVALID);
	EXPECT(F->C_SignInit(s, &ms, priv), CKR_OK);
	EXPECT(F->C_SignInit(s, &ms, priv), CKR_OPERATION_ACTIVE);
	EXPECT(F->C_Sign(s, msg, 7, NULL, &siglen), CKR_OK);
	REQUIRE(siglen == 2420);
	siglen = 10;
	EXPECT(F->C_Sign(s, msg, 7, sig, &siglen), CKR_BUFFER_TOO_SMALL);
	REQUIRE(siglen == 2420);
	siglen = sizeof(sig);
	EXPECT(F->C_Sign(s, msg, 7, sig, &siglen), CKR_OK);
	REQUIRE(siglen == 2420);
	EXPECT(F->C_Sign(s, msg, 7, sig, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT(F->C_VerifyInit(s, &ms, pub), CKR_OK);
	EXPECT(F->C_Verify(s, msg, 7, sig, siglen), CKR_OK);
	sig[5] ^= 1;
	EXPECT(F->C_VerifyInit(s, &ms, pub), CKR_OK);
	EXPECT(F->C_Verify(s, msg, 7, sig, siglen), CKR_SIGNATURE_INVALID);
	EXPECT(F->C_VerifyInit(s, &ms, pub), CKR_OK);
	EXPECT(F->C_Verify(s, msg, 7, sig, 100), CKR_SIGNATURE_LEN_RANGE);
	/* C_Sign with bad arguments ends the operation. */
	EXPECT(F->C_SignInit(s, &ms, priv), CKR_OK);
	EXPECT(F->C_Sign(s, msg, 7, sig, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_Sign(s, msg, 7, NULL, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	EXPECT(F->C_SignInit(s, &ms, priv), CKR_OK);
	EXPECT(F->C_Sign(s, NULL, 7, NULL, &siglen), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_SignInit(s, &ms, priv), CKR_OK);

	/* Deterministic signatures repeat; hedged ones do not. */
	CK_BYTE sig2[8000];
	CK_ULONG sig2len = sizeof(sig2);
	CK_SIGN_ADDITIONAL_CONTEXT det = {CKH_DETERMINISTIC_REQUIRED, NULL, 0};
	CK_MECHANISM md = {CKM_ML_DSA, &det, sizeof(det)};
	siglen = sizeof(sig);
	EXPECT(F->C_Sign(s, msg, 7, sig, &siglen), CKR_OK); /* ends the operation begun above */
	EXPECT(F->C_SignInit(s, &md, priv), CKR_OK);
	siglen = sizeof(sig);
	EXPECT(F->C_Sign(s, msg, 7, sig, &siglen), CKR_OK);
	EXPECT(F->C_SignInit(s, &md, priv), CKR_OK);
	EXPECT(F->C_Sign(s, msg, 7, sig2, &sig2len), CKR_OK);
	REQUIRE(siglen == sig2len && memcmp(sig, sig2, siglen) == 0);
	det.hedgeVariant = CKH_HEDGE_REQUIRED;
	EXPECT(F->C_SignInit(s, &md, priv), CKR_OK);
	EXPECT(F->C_Sign(s, msg, 7, sig2, &sig2len), CKR_OK);
	REQUIRE(memcmp(sig, sig2, siglen) != 0);

	/* Searches. */
	CK_OBJECT_HANDLE found[4];
	EXPECT(F->C_FindObjects(s, found, 4, &n), CKR_OPERATION_NOT_INITIALIZED);
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE ft[] = {{CKA_CLASS, &cls, sizeof(cls)}};
	EXPECT(F->C_FindObjectsInit(s, NULL, 1), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_FindObjectsInit(s, ft, 1), CKR_OK);
	EXPECT(F->C_FindObjectsInit(s, ft, 1), CKR_OPERATION_ACTIVE);
	EXPECT(F->C_FindObjects(s, found, 4, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_FindObjects(s, NULL, 4, &n), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_FindObjects(s, found, 4, &n), CKR_OK);
	REQUIRE(n >= 1);
	EXPECT(F->C_FindObjectsFinal(s), CKR_OK);
	EXPECT(F->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);

	/* ML-KEM encapsulation, with the size query. */
	CK_OBJECT_HANDLE kpub, kpriv, k1, k2;
	CK_MECHANISM mk = {CKM_ML_KEM_KEY_PAIR_GEN, NULL, 0};
	CK_ATTRIBUTE kt[] = {{CKA_PARAMETER_SET, &set44, sizeof(set44)}};
	EXPECT(F->C_GenerateKeyPair(s, &mk, kt, 1, NULL, 0, &kpub, &kpriv), CKR_OK);
	CK_MECHANISM kem = {CKM_ML_KEM, NULL, 0};
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_KEY_TYPE gs = CKK_GENERIC_SECRET;
	CK_BBOOL no = CK_FALSE;
	CK_ATTRIBUTE st[] = {{CKA_CLASS, &sk, sizeof(sk)}, {CKA_KEY_TYPE, &gs, sizeof(gs)},
		{CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
	CK_ULONG ctlen = 0;
	EXPECT(F->C_EncapsulateKey(s, &kem, kpub, st, 4, NULL, &ctlen, &k1), CKR_OK);
	REQUIRE(ctlen == 768);
	ctlen = 10;
	EXPECT(F->C_EncapsulateKey(s, &kem, kpub, st, 4, buf, &ctlen, &k1), CKR_BUFFER_TOO_SMALL);
	REQUIRE(ctlen == 768);
	EXPECT(F->C_EncapsulateKey(s, &kem, kpriv, st, 4, buf, &ctlen, &k1), CKR_KEY_TYPE_INCONSISTENT);
	EXPECT(F->C_EncapsulateKey(s, &kem, kpub, st, 4, buf, &ctlen, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_EncapsulateKey(s, &kem, kpub, st, 4, buf, &ctlen, &k1), CKR_OK);
	EXPECT(F->C_DecapsulateKey(s, &kem, kpriv, st, 4, buf, 767, &k2), CKR_ENCRYPTED_DATA_LEN_RANGE);
	EXPECT(F->C_DecapsulateKey(s, &kem, kpriv, st, 4, buf, ctlen, NULL), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_DecapsulateKey(s, &kem, kpriv, st, 4, buf, ctlen, &k2), CKR_OK);
	CK_BYTE v1[64], v2[64];
	CK_ATTRIBUTE r1 = {CKA_VALUE, v1, sizeof(v1)}, r2 = {CKA_VALUE, v2, sizeof(v2)};
	EXPECT(F->C_GetAttributeValue(s, k1, &r1, 1), CKR_OK);
	EXPECT(F->C_GetAttributeValue(s, k2, &r2, 1), CKR_OK);
	REQUIRE(r1.ulValueLen == 32 && r2.ulValueLen == 32 && memcmp(v1, v2, 32) == 0);

	/* Objects go; unknown functions say so. */
	EXPECT(F->C_DestroyObject(s, k1), CKR_OK);
	EXPECT(F->C_DestroyObject(s, k1), CKR_OBJECT_HANDLE_INVALID);
	EXPECT(F->C_Encrypt(s, msg, 7, buf, &n), CKR_FUNCTION_NOT_SUPPORTED);
	EXPECT(F->C_SignUpdate(s, msg, 7), CKR_FUNCTION_NOT_SUPPORTED);

	/* Interfaces. */
	CK_INTERFACE ifs[3];
	EXPECT(F->C_GetInterfaceList(NULL, &n), CKR_OK);
	REQUIRE(n == 3);
	n = 1;
	EXPECT(F->C_GetInterfaceList(ifs, &n), CKR_BUFFER_TOO_SMALL);
	REQUIRE(n == 3);
	CK_INTERFACE *ip;
	CK_VERSION v30 = {3, 0}, v99 = {9, 9};
	EXPECT(F->C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ip, 0), CKR_OK);
	EXPECT(((CK_FUNCTION_LIST_3_0 *)ip->pFunctionList)->C_GetInfo(&info), CKR_OK);
	REQUIRE(info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 0);
	EXPECT(F->C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v99, &ip, 0), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GetInterface((CK_UTF8CHAR_PTR) "other", NULL, &ip, 0), CKR_ARGUMENTS_BAD);
	EXPECT(F->C_GetInterface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
	CK_FUNCTION_LIST *l240;
	EXPECT(F->C_GetFunctionList(&l240), CKR_OK);
	EXPECT(l240->C_GetInfo(&info), CKR_OK);
	REQUIRE(info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40);

	/* Logout ends access to private keys; the last session close logs out. */
	EXPECT(F->C_Logout(s), CKR_OK);
	EXPECT(F->C_Logout(s), CKR_USER_NOT_LOGGED_IN);
	EXPECT(F->C_SignInit(s, &ms, priv), CKR_KEY_HANDLE_INVALID); /* a private session object went with the login */
	EXPECT(F->C_CloseSession(s), CKR_OK);
	EXPECT(F->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
	EXPECT(F->C_Finalize(NULL), CKR_OK);
	EXPECT(F->C_GetTokenInfo(slot, &ti), CKR_CRYPTOKI_NOT_INITIALIZED);
	(void)gen_mldsa;
	return 0;
}

int capi_checks(CK_SLOT_ID slot, const char *pin, char *msg, size_t msglen)
{
	g_msg = msg;
	g_msglen = msglen;
	g_failed = 0;
	msg[0] = '\0';
	int r = checks(slot, pin);
	if (r != 0)
		F->C_Finalize(NULL);
	return r;
}

/* Small calls for the Go tests. */

CK_RV capi_initialize(void) { return F->C_Initialize(NULL); }
CK_RV capi_finalize(void) { return F->C_Finalize(NULL); }

CK_RV capi_open_login(CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *s)
{
	CK_RV rv = F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);
	if (rv != CKR_OK)
		return rv;
	rv = F->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

CK_RV capi_session_state(CK_SESSION_HANDLE s, CK_ULONG *state)
{
	CK_SESSION_INFO si;
	CK_RV rv = F->C_GetSessionInfo(s, &si);
	*state = si.state;
	return rv;
}

/* capi_sign_ecdsa makes a P-256 session key and signs with it n times. */
CK_RV capi_sign_ecdsa(CK_SESSION_HANDLE s, int n)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, p256, sizeof(p256)}};
	CK_MECHANISM mg = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, ms = {CKM_ECDSA, NULL, 0};
	CK_OBJECT_HANDLE pub, priv;
	CK_RV rv = F->C_GenerateKeyPair(s, &mg, pt, 1, NULL, 0, &pub, &priv);
	CK_BYTE digest[32] = {1, 2, 3}, sig[64];
	for (int i = 0; rv == CKR_OK && i < n; i++) {
		CK_ULONG len = sizeof(sig);
		rv = F->C_SignInit(s, &ms, priv);
		if (rv == CKR_OK)
			rv = F->C_Sign(s, digest, sizeof(digest), sig, &len);
		if (rv == CKR_OK)
			rv = F->C_VerifyInit(s, &ms, pub);
		if (rv == CKR_OK)
			rv = F->C_Verify(s, digest, sizeof(digest), sig, len);
		digest[0]++;
	}
	return rv;
}
