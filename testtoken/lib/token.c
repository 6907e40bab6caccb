/*
 * token.c: the PKCS#11 functions of libqpki-testtoken. Each one checks its
 * pointers and lengths, forwards the call to the daemon and copies the
 * results back following the PKCS#11 conventions (a NULL output buffer asks
 * for the length; a short one gets CKR_BUFFER_TOO_SMALL).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CHECK_INIT()                                   \
	do {                                           \
		if (!wire_initialized())               \
			return CKR_CRYPTOKI_NOT_INITIALIZED; \
	} while (0)

/* copy_padded fills a fixed-size PKCS#11 text field, blank padded. */
static void copy_padded(CK_UTF8CHAR *dst, size_t dstlen, const unsigned char *src, size_t srclen)
{
	memset(dst, ' ', dstlen);
	if (src != NULL)
		memcpy(dst, src, srclen < dstlen ? srclen : dstlen);
}

static CK_RV put_pin(struct wbuf *w, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	if (pin == NULL)
		return CKR_ARGUMENTS_BAD; /* no protected authentication path */
	if (len > WIRE_MAX_PIN)
		return CKR_PIN_LEN_RANGE;
	wb_bytes(w, pin, len);
	return CKR_OK;
}

static CK_RV put_template(struct wbuf *w, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	if (n > 0 && t == NULL)
		return CKR_ARGUMENTS_BAD;
	if (n > WIRE_MAX_TEMPLATE)
		return CKR_ARGUMENTS_BAD;
	wb_u64(w, n);
	for (CK_ULONG i = 0; i < n; i++) {
		if (t[i].ulValueLen > WIRE_MAX_ATTR)
			return CKR_ATTRIBUTE_VALUE_INVALID;
		if (t[i].ulValueLen > 0 && t[i].pValue == NULL)
			return CKR_ARGUMENTS_BAD;
		wb_u64(w, t[i].type);
		wb_bytes(w, t[i].pValue, t[i].ulValueLen);
	}
	return CKR_OK;
}

static CK_RV put_mechanism(struct wbuf *w, CK_MECHANISM_PTR m)
{
	if (m == NULL)
		return CKR_ARGUMENTS_BAD;
	if (m->pParameter == NULL && m->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	wb_u64(w, m->mechanism);
	if (m->pParameter == NULL) {
		wb_u64(w, PARAM_NONE);
		return CKR_OK;
	}
	if (m->mechanism == CKM_ML_DSA || m->mechanism == CKM_SLH_DSA) {
		CK_SIGN_ADDITIONAL_CONTEXT c;
		if (m->ulParameterLen != sizeof(c))
			return CKR_MECHANISM_PARAM_INVALID;
		memcpy(&c, m->pParameter, sizeof(c));
		if (c.ulContextLen > 255 || (c.ulContextLen > 0 && c.pContext == NULL))
			return CKR_MECHANISM_PARAM_INVALID;
		wb_u64(w, PARAM_SIGN_CONTEXT);
		wb_u64(w, c.hedgeVariant);
		wb_bytes(w, c.pContext, c.ulContextLen);
		return CKR_OK;
	}
	if (m->ulParameterLen > WIRE_MAX_ATTR)
		return CKR_MECHANISM_PARAM_INVALID;
	wb_u64(w, PARAM_RAW);
	wb_bytes(w, m->pParameter, m->ulParameterLen);
	return CKR_OK;
}

/* simple sends a request whose reply carries nothing but the rv. */
static CK_RV simple(struct wbuf *w, int on_session)
{
	struct reply rep;
	CK_RV rv = wire_call(w, &rep, on_session);
	reply_free(&rep);
	wb_free(w);
	return rv;
}

/* finish maps a reply that failed to parse to CKR_DEVICE_ERROR. */
static CK_RV finish(struct wbuf *w, struct reply *rep, CK_RV rv)
{
	if (rv == CKR_OK && rep->r.err)
		rv = CKR_DEVICE_ERROR;
	reply_free(rep);
	wb_free(w);
	return rv;
}

/* ulong_list answers C_GetSlotList and C_GetMechanismList. */
static CK_RV ulong_list(struct wbuf *w, CK_ULONG_PTR out, CK_ULONG_PTR count)
{
	struct reply rep;
	CK_RV rv = wire_call(w, &rep, 0);
	if (rv == CKR_OK) {
		uint64_t n = rb_u64(&rep.r);
		if (rep.r.err || n > WIRE_MAX_LIST) {
			rep.r.err = 1;
		} else if (out == NULL) {
			*count = (CK_ULONG)n;
		} else if (*count < n) {
			*count = (CK_ULONG)n;
			rv = CKR_BUFFER_TOO_SMALL;
		} else {
			for (uint64_t i = 0; i < n; i++)
				out[i] = (CK_ULONG)rb_u64(&rep.r);
			if (!rep.r.err)
				*count = (CK_ULONG)n;
		}
	}
	return finish(w, &rep, rv);
}

/* General purpose. */

QPKI_EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs)
{
	if (pInitArgs != NULL) {
		CK_C_INITIALIZE_ARGS a;
		memcpy(&a, pInitArgs, sizeof(a));
		if (a.pReserved != NULL)
			return CKR_ARGUMENTS_BAD;
		int n = (a.CreateMutex != NULL) + (a.DestroyMutex != NULL) + (a.LockMutex != NULL) + (a.UnlockMutex != NULL);
		if (n != 0 && n != 4)
			return CKR_ARGUMENTS_BAD;
		/* The library locks with pthreads; it cannot use the caller's mutexes. */
		if (n == 4 && !(a.flags & CKF_OS_LOCKING_OK))
			return CKR_CANT_LOCK;
	}
	return wire_initialize();
}

QPKI_EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved)
{
	if (pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	return wire_finalize();
}

static CK_RV get_info(CK_INFO_PTR pInfo, CK_BYTE major, CK_BYTE minor)
{
	CHECK_INIT();
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->cryptokiVersion.major = major;
	pInfo->cryptokiVersion.minor = minor;
	const char *m = "qpki";
	const char *d = "qpki test token (dev/CI only)";
	copy_padded(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), (const unsigned char *)m, strlen(m));
	copy_padded(pInfo->libraryDescription, sizeof(pInfo->libraryDescription), (const unsigned char *)d, strlen(d));
	pInfo->libraryVersion.major = 1;
	pInfo->libraryVersion.minor = 0;
	return CKR_OK;
}

/* C_GetInfo reports the version of the function list it was reached by. */
QPKI_EXPORT CK_RV C_GetInfo(CK_INFO_PTR pInfo) { return get_info(pInfo, 3, 2); }
CK_RV qpki_get_info_30(CK_INFO_PTR pInfo) { return get_info(pInfo, 3, 0); }
CK_RV qpki_get_info_240(CK_INFO_PTR pInfo) { return get_info(pInfo, 2, 40); }

/* Slots and tokens. */

QPKI_EXPORT CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	CHECK_INIT();
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_SLOT_LIST);
	wb_u64(&w, tokenPresent ? 1 : 0);
	return ulong_list(&w, pSlotList, pulCount);
}

QPKI_EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	CHECK_INIT();
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_SLOT_INFO);
	wb_u64(&w, slotID);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 0);
	if (rv == CKR_OK) {
		size_t dn, mn;
		const unsigned char *d = rb_bytes(&rep.r, &dn);
		const unsigned char *m = rb_bytes(&rep.r, &mn);
		uint64_t flags = rb_u64(&rep.r), hw = rb_u64(&rep.r), fw = rb_u64(&rep.r);
		if (!rep.r.err) {
			copy_padded(pInfo->slotDescription, sizeof(pInfo->slotDescription), d, dn);
			copy_padded(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), m, mn);
			pInfo->flags = (CK_FLAGS)flags;
			pInfo->hardwareVersion.major = (CK_BYTE)(hw >> 8);
			pInfo->hardwareVersion.minor = (CK_BYTE)hw;
			pInfo->firmwareVersion.major = (CK_BYTE)(fw >> 8);
			pInfo->firmwareVersion.minor = (CK_BYTE)fw;
		}
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	CHECK_INIT();
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_TOKEN_INFO);
	wb_u64(&w, slotID);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 0);
	if (rv == CKR_OK) {
		size_t ln, mn, on, sn, un;
		const unsigned char *label = rb_bytes(&rep.r, &ln);
		const unsigned char *manuf = rb_bytes(&rep.r, &mn);
		const unsigned char *model = rb_bytes(&rep.r, &on);
		const unsigned char *serial = rb_bytes(&rep.r, &sn);
		uint64_t v[11];
		for (int i = 0; i < 11; i++)
			v[i] = rb_u64(&rep.r);
		uint64_t hw = rb_u64(&rep.r), fw = rb_u64(&rep.r);
		const unsigned char *utc = rb_bytes(&rep.r, &un);
		if (!rep.r.err) {
			copy_padded(pInfo->label, sizeof(pInfo->label), label, ln);
			copy_padded(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), manuf, mn);
			copy_padded(pInfo->model, sizeof(pInfo->model), model, on);
			copy_padded(pInfo->serialNumber, sizeof(pInfo->serialNumber), serial, sn);
			pInfo->flags = (CK_FLAGS)v[0];
			pInfo->ulMaxSessionCount = (CK_ULONG)v[1];
			pInfo->ulSessionCount = (CK_ULONG)v[2];
			pInfo->ulMaxRwSessionCount = (CK_ULONG)v[3];
			pInfo->ulRwSessionCount = (CK_ULONG)v[4];
			pInfo->ulMaxPinLen = (CK_ULONG)v[5];
			pInfo->ulMinPinLen = (CK_ULONG)v[6];
			pInfo->ulTotalPublicMemory = (CK_ULONG)v[7];
			pInfo->ulFreePublicMemory = (CK_ULONG)v[8];
			pInfo->ulTotalPrivateMemory = (CK_ULONG)v[9];
			pInfo->ulFreePrivateMemory = (CK_ULONG)v[10];
			pInfo->hardwareVersion.major = (CK_BYTE)(hw >> 8);
			pInfo->hardwareVersion.minor = (CK_BYTE)hw;
			pInfo->firmwareVersion.major = (CK_BYTE)(fw >> 8);
			pInfo->firmwareVersion.minor = (CK_BYTE)fw;
			copy_padded(pInfo->utcTime, sizeof(pInfo->utcTime), utc, un);
		}
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount)
{
	CHECK_INIT();
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_MECH_LIST);
	wb_u64(&w, slotID);
	return ulong_list(&w, pMechanismList, pulCount);
}

QPKI_EXPORT CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	CHECK_INIT();
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_MECH_INFO);
	wb_u64(&w, slotID);
	wb_u64(&w, type);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 0);
	if (rv == CKR_OK) {
		uint64_t min = rb_u64(&rep.r), max = rb_u64(&rep.r), flags = rb_u64(&rep.r);
		if (!rep.r.err) {
			pInfo->ulMinKeySize = (CK_ULONG)min;
			pInfo->ulMaxKeySize = (CK_ULONG)max;
			pInfo->flags = (CK_FLAGS)flags;
		}
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)
{
	CHECK_INIT();
	if (pLabel == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_INIT_TOKEN);
	wb_u64(&w, slotID);
	CK_RV rv = put_pin(&w, pPin, ulPinLen);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	wb_bytes(&w, pLabel, 32);
	return simple(&w, 0);
}

QPKI_EXPORT CK_RV C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_INIT_PIN);
	wb_u64(&w, hSession);
	CK_RV rv = put_pin(&w, pPin, ulPinLen);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	return simple(&w, 1);
}

QPKI_EXPORT CK_RV C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_SET_PIN);
	wb_u64(&w, hSession);
	CK_RV rv = put_pin(&w, pOldPin, ulOldLen);
	if (rv == CKR_OK)
		rv = put_pin(&w, pNewPin, ulNewLen);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	return simple(&w, 1);
}

/* Sessions. */

QPKI_EXPORT CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
	(void)pApplication;
	(void)Notify; /* the token never calls back */
	CHECK_INIT();
	if (phSession == NULL)
		return CKR_ARGUMENTS_BAD;
	if (!(flags & CKF_SERIAL_SESSION))
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	struct wbuf w;
	wb_init(&w, OP_OPEN_SESSION);
	wb_u64(&w, slotID);
	wb_u64(&w, flags);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 0);
	if (rv == CKR_OK) {
		uint64_t h = rb_u64(&rep.r);
		if (!rep.r.err)
			*phSession = (CK_SESSION_HANDLE)h;
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE hSession)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_CLOSE_SESSION);
	wb_u64(&w, hSession);
	return simple(&w, 1);
}

QPKI_EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID slotID)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_CLOSE_ALL);
	wb_u64(&w, slotID);
	return simple(&w, 0);
}

QPKI_EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	CHECK_INIT();
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_SESSION_INFO);
	wb_u64(&w, hSession);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 1);
	if (rv == CKR_OK) {
		uint64_t slot = rb_u64(&rep.r), state = rb_u64(&rep.r), flags = rb_u64(&rep.r), derr = rb_u64(&rep.r);
		if (!rep.r.err) {
			pInfo->slotID = (CK_SLOT_ID)slot;
			pInfo->state = (CK_STATE)state;
			pInfo->flags = (CK_FLAGS)flags;
			pInfo->ulDeviceError = (CK_ULONG)derr;
		}
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_LOGIN);
	wb_u64(&w, hSession);
	wb_u64(&w, userType);
	CK_RV rv = put_pin(&w, pPin, ulPinLen);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	return simple(&w, 1);
}

QPKI_EXPORT CK_RV C_Logout(CK_SESSION_HANDLE hSession)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_LOGOUT);
	wb_u64(&w, hSession);
	return simple(&w, 1);
}

/* Objects. */

QPKI_EXPORT CK_RV C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_DESTROY);
	wb_u64(&w, hSession);
	wb_u64(&w, hObject);
	return simple(&w, 1);
}

QPKI_EXPORT CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	CHECK_INIT();
	if ((ulCount > 0 && pTemplate == NULL) || ulCount > WIRE_MAX_TEMPLATE)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_GET_ATTRS);
	wb_u64(&w, hSession);
	wb_u64(&w, hObject);
	wb_u64(&w, ulCount);
	for (CK_ULONG i = 0; i < ulCount; i++)
		wb_u64(&w, pTemplate[i].type);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 1);
	if (rv != CKR_OK)
		return finish(&w, &rep, rv);
	uint64_t n = rb_u64(&rep.r);
	if (rep.r.err || n != ulCount)
		return finish(&w, &rep, CKR_DEVICE_ERROR);
	/* Check the whole reply before writing to the caller's template. */
	struct rbuf check = rep.r;
	for (CK_ULONG i = 0; i < ulCount; i++) {
		size_t vn;
		uint64_t status = rb_u64(&check);
		rb_bytes(&check, &vn);
		if (status > ATTR_INVALID)
			check.err = 1;
	}
	if (check.err)
		return finish(&w, &rep, CKR_DEVICE_ERROR);
	for (CK_ULONG i = 0; i < ulCount; i++) {
		size_t vn;
		uint64_t status = rb_u64(&rep.r);
		const unsigned char *v = rb_bytes(&rep.r, &vn);
		CK_ATTRIBUTE *a = &pTemplate[i];
		if (status == ATTR_SENSITIVE) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_ATTRIBUTE_SENSITIVE;
		} else if (status == ATTR_INVALID) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_ATTRIBUTE_TYPE_INVALID;
		} else if (a->pValue == NULL) {
			a->ulValueLen = (CK_ULONG)vn;
		} else if (a->ulValueLen < vn) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			rv = CKR_BUFFER_TOO_SMALL;
		} else {
			if (vn > 0)
				memcpy(a->pValue, v, vn);
			a->ulValueLen = (CK_ULONG)vn;
		}
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_SET_ATTRS);
	wb_u64(&w, hSession);
	wb_u64(&w, hObject);
	CK_RV rv = put_template(&w, pTemplate, ulCount);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	return simple(&w, 1);
}

QPKI_EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_FIND_INIT);
	wb_u64(&w, hSession);
	CK_RV rv = put_template(&w, pTemplate, ulCount);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	return simple(&w, 1);
}

QPKI_EXPORT CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
	CHECK_INIT();
	if (pulObjectCount == NULL || (phObject == NULL && ulMaxObjectCount > 0))
		return CKR_ARGUMENTS_BAD;
	CK_ULONG max = ulMaxObjectCount > WIRE_MAX_HANDLES ? WIRE_MAX_HANDLES : ulMaxObjectCount;
	struct wbuf w;
	wb_init(&w, OP_FIND);
	wb_u64(&w, hSession);
	wb_u64(&w, max);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 1);
	if (rv == CKR_OK) {
		uint64_t n = rb_u64(&rep.r);
		if (rep.r.err || n > max)
			return finish(&w, &rep, CKR_DEVICE_ERROR);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t h = rb_u64(&rep.r);
			if (!rep.r.err)
				phObject[i] = (CK_OBJECT_HANDLE)h;
		}
		if (!rep.r.err)
			*pulObjectCount = (CK_ULONG)n;
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
	CHECK_INIT();
	struct wbuf w;
	wb_init(&w, OP_FIND_FINAL);
	wb_u64(&w, hSession);
	return simple(&w, 1);
}

/* Keys. */

QPKI_EXPORT CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
	CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
	CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
	CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	CHECK_INIT();
	if (phPublicKey == NULL || phPrivateKey == NULL)
		return CKR_ARGUMENTS_BAD;
	struct wbuf w;
	wb_init(&w, OP_GEN_KEYPAIR);
	wb_u64(&w, hSession);
	CK_RV rv = put_mechanism(&w, pMechanism);
	if (rv == CKR_OK)
		rv = put_template(&w, pPublicKeyTemplate, ulPublicKeyAttributeCount);
	if (rv == CKR_OK)
		rv = put_template(&w, pPrivateKeyTemplate, ulPrivateKeyAttributeCount);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	struct reply rep;
	rv = wire_call(&w, &rep, 1);
	if (rv == CKR_OK) {
		uint64_t pub = rb_u64(&rep.r), priv = rb_u64(&rep.r);
		if (!rep.r.err) {
			*phPublicKey = (CK_OBJECT_HANDLE)pub;
			*phPrivateKey = (CK_OBJECT_HANDLE)priv;
		}
	}
	return finish(&w, &rep, rv);
}

/* Signatures. */

static CK_RV op_init(uint64_t op, CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct wbuf w;
	wb_init(&w, op);
	wb_u64(&w, hSession);
	CK_RV rv = put_mechanism(&w, pMechanism);
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	wb_u64(&w, hKey);
	return simple(&w, 1);
}

QPKI_EXPORT CK_RV C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CHECK_INIT();
	return op_init(OP_SIGN_INIT, hSession, pMechanism, hKey);
}

/*
 * abort_sign ends the signing operation after bad arguments: C_Sign ends
 * the operation on every error but CKR_BUFFER_TOO_SMALL.
 */
static CK_RV abort_sign(CK_SESSION_HANDLE hSession, CK_RV rv)
{
	struct wbuf w;
	wb_init(&w, OP_SIGN);
	wb_u64(&w, hSession);
	wb_bytes(&w, NULL, 0);
	wb_u64(&w, MODE_ABORT);
	wb_u64(&w, 0);
	CK_RV r = simple(&w, 1);
	if (r == CKR_SESSION_HANDLE_INVALID || r == CKR_DEVICE_REMOVED || r == CKR_OPERATION_NOT_INITIALIZED)
		return r;
	return rv;
}

QPKI_EXPORT CK_RV C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	CHECK_INIT();
	if (pulSignatureLen == NULL || (pData == NULL && ulDataLen > 0))
		return abort_sign(hSession, CKR_ARGUMENTS_BAD);
	if (ulDataLen > WIRE_MAX_DATA)
		return abort_sign(hSession, CKR_DATA_LEN_RANGE);
	uint64_t mode = pSignature == NULL ? MODE_LENGTH : MODE_OUTPUT;
	struct wbuf w;
	wb_init(&w, OP_SIGN);
	wb_u64(&w, hSession);
	wb_bytes(&w, pData, ulDataLen);
	wb_u64(&w, mode);
	wb_u64(&w, mode == MODE_OUTPUT ? *pulSignatureLen : 0);
	struct reply rep;
	CK_RV rv = wire_call(&w, &rep, 1);
	if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) {
		uint64_t need = rb_u64(&rep.r);
		size_t n = 0;
		const unsigned char *sig = rv == CKR_OK ? rb_bytes(&rep.r, &n) : NULL;
		if (rep.r.err || need > WIRE_MAX_FRAME) {
			rep.r.err = 1;
			rv = CKR_DEVICE_ERROR;
		} else if (rv == CKR_BUFFER_TOO_SMALL || mode == MODE_LENGTH) {
			*pulSignatureLen = (CK_ULONG)need;
		} else if (n != need || n > *pulSignatureLen) {
			rv = CKR_DEVICE_ERROR;
		} else {
			memcpy(pSignature, sig, n);
			*pulSignatureLen = (CK_ULONG)n;
		}
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CHECK_INIT();
	return op_init(OP_VERIFY_INIT, hSession, pMechanism, hKey);
}

QPKI_EXPORT CK_RV C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	CHECK_INIT();
	CK_RV bad = CKR_OK;
	if ((pData == NULL && ulDataLen > 0) || (pSignature == NULL && ulSignatureLen > 0))
		bad = CKR_ARGUMENTS_BAD;
	else if (ulDataLen > WIRE_MAX_DATA)
		bad = CKR_DATA_LEN_RANGE;
	else if (ulSignatureLen > WIRE_MAX_DATA)
		bad = CKR_SIGNATURE_LEN_RANGE;
	struct wbuf w;
	wb_init(&w, OP_VERIFY);
	wb_u64(&w, hSession);
	if (bad != CKR_OK) {
		/* C_Verify always ends the operation: tell the daemon. */
		wb_bytes(&w, NULL, 0);
		wb_bytes(&w, NULL, 0);
		wb_u64(&w, 1);
		CK_RV r = simple(&w, 1);
		if (r == CKR_SESSION_HANDLE_INVALID || r == CKR_DEVICE_REMOVED || r == CKR_OPERATION_NOT_INITIALIZED)
			return r;
		return bad;
	}
	wb_bytes(&w, pData, ulDataLen);
	wb_bytes(&w, pSignature, ulSignatureLen);
	return simple(&w, 1);
}

/* Key encapsulation (PKCS#11 3.2). */

QPKI_EXPORT CK_RV C_EncapsulateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hPublicKey,
	CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen,
	CK_OBJECT_HANDLE_PTR phKey)
{
	CHECK_INIT();
	if (pulCiphertextLen == NULL || (pCiphertext != NULL && phKey == NULL))
		return CKR_ARGUMENTS_BAD;
	uint64_t mode = pCiphertext == NULL ? MODE_LENGTH : MODE_OUTPUT;
	struct wbuf w;
	wb_init(&w, OP_ENCAPSULATE);
	wb_u64(&w, hSession);
	CK_RV rv = put_mechanism(&w, pMechanism);
	if (rv == CKR_OK) {
		wb_u64(&w, hPublicKey);
		rv = put_template(&w, pTemplate, ulAttributeCount);
	}
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	wb_u64(&w, mode);
	wb_u64(&w, mode == MODE_OUTPUT ? *pulCiphertextLen : 0);
	struct reply rep;
	rv = wire_call(&w, &rep, 1);
	if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) {
		uint64_t need = rb_u64(&rep.r);
		size_t n = 0;
		const unsigned char *ct = NULL;
		uint64_t key = 0;
		if (rv == CKR_OK) {
			ct = rb_bytes(&rep.r, &n);
			key = rb_u64(&rep.r);
		}
		if (rep.r.err || need > WIRE_MAX_FRAME) {
			rep.r.err = 1;
			rv = CKR_DEVICE_ERROR;
		} else if (rv == CKR_BUFFER_TOO_SMALL || mode == MODE_LENGTH) {
			*pulCiphertextLen = (CK_ULONG)need;
		} else if (n != need || n > *pulCiphertextLen) {
			rv = CKR_DEVICE_ERROR;
		} else {
			memcpy(pCiphertext, ct, n);
			*pulCiphertextLen = (CK_ULONG)n;
			*phKey = (CK_OBJECT_HANDLE)key;
		}
	}
	return finish(&w, &rep, rv);
}

QPKI_EXPORT CK_RV C_DecapsulateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hPrivateKey,
	CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen,
	CK_OBJECT_HANDLE_PTR phKey)
{
	CHECK_INIT();
	if (phKey == NULL || (pCiphertext == NULL && ulCiphertextLen > 0))
		return CKR_ARGUMENTS_BAD;
	if (ulCiphertextLen > WIRE_MAX_DATA)
		return CKR_ENCRYPTED_DATA_LEN_RANGE;
	struct wbuf w;
	wb_init(&w, OP_DECAPSULATE);
	wb_u64(&w, hSession);
	CK_RV rv = put_mechanism(&w, pMechanism);
	if (rv == CKR_OK) {
		wb_u64(&w, hPrivateKey);
		rv = put_template(&w, pTemplate, ulAttributeCount);
	}
	if (rv != CKR_OK) {
		wb_free(&w);
		return rv;
	}
	wb_bytes(&w, pCiphertext, ulCiphertextLen);
	struct reply rep;
	rv = wire_call(&w, &rep, 1);
	if (rv == CKR_OK) {
		uint64_t key = rb_u64(&rep.r);
		if (!rep.r.err)
			*phKey = (CK_OBJECT_HANDLE)key;
	}
	return finish(&w, &rep, rv);
}

/* Legacy parallel functions. */

QPKI_EXPORT CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
	(void)hSession;
	CHECK_INIT();
	return CKR_FUNCTION_NOT_PARALLEL;
}

QPKI_EXPORT CK_RV C_CancelFunction(CK_SESSION_HANDLE hSession)
{
	(void)hSession;
	CHECK_INIT();
	return CKR_FUNCTION_NOT_PARALLEL;
}
