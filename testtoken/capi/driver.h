/* driver.h: the C side of package capi (see driver.c and fuzz.c). */
#ifndef QPKI_CAPI_DRIVER_H
#define QPKI_CAPI_DRIVER_H

#include <stddef.h>

#include "pkcs11_32.h"

extern CK_FUNCTION_LIST_3_2 *capi_functions;
#define F capi_functions

#define CKR_USER_TYPE_INVALID 0x103UL

int capi_load(const char *path, char *err, size_t errlen);
int capi_checks(CK_SLOT_ID slot, const char *pin, char *msg, size_t msglen);
#define CAPI_OPS 26
extern unsigned long capi_ok[CAPI_OPS];
int capi_run(const unsigned char *p, size_t n, CK_SLOT_ID slot, const char *pin, char *msg, size_t msglen);
CK_RV capi_initialize(void);
CK_RV capi_finalize(void);
CK_RV capi_open_login(CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *s);
CK_RV capi_session_state(CK_SESSION_HANDLE s, CK_ULONG *state);
CK_RV capi_sign_ecdsa(CK_SESSION_HANDLE s, int n);

#endif
