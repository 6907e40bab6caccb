/*
 * wire.c: frames, items and the pool of connections to the token daemon.
 *
 * Each call takes a connection from the pool (or dials a new one), so that
 * threads work in parallel without sharing a socket. A connection starts
 * with OP_HELLO carrying this process's random application id: the daemon
 * keeps one login state per application, and forgets it when the last of
 * the application's connections closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define SOCKET_ENV "QPKI_TESTTOKEN_SOCKET"
#define IDLE_MAX 64
#define IO_TIMEOUT_SECONDS 120

/* Items. */

void wb_init(struct wbuf *w, uint64_t op)
{
	w->p = NULL;
	w->len = 4; /* room for the frame length */
	w->cap = 0;
	w->err = 0;
	wb_u64(w, op);
}

void wb_free(struct wbuf *w)
{
	free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
}

static int wb_grow(struct wbuf *w, size_t n)
{
	if (w->err)
		return -1;
	if (n > WIRE_MAX_FRAME || w->len + n > WIRE_MAX_FRAME + 4) {
		w->err = 1;
		return -1;
	}
	if (w->len + n <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap : 256;
	while (cap < w->len + n)
		cap *= 2;
	unsigned char *p = realloc(w->p, cap);
	if (p == NULL) {
		w->err = 1;
		return -1;
	}
	w->p = p;
	w->cap = cap;
	return 0;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static uint64_t get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

void wb_u64(struct wbuf *w, uint64_t v)
{
	if (wb_grow(w, 9) < 0)
		return;
	w->p[w->len] = 'U';
	put_be(w->p + w->len + 1, v, 8);
	w->len += 9;
}

void wb_bytes(struct wbuf *w, const void *p, size_t n)
{
	if (n > WIRE_MAX_FRAME || wb_grow(w, 5 + n) < 0) {
		w->err = 1;
		return;
	}
	w->p[w->len] = 'B';
	put_be(w->p + w->len + 1, n, 4);
	if (n > 0)
		memcpy(w->p + w->len + 5, p, n);
	w->len += 5 + n;
}

uint64_t rb_u64(struct rbuf *r)
{
	if (r->err || r->len < 9 || r->p[0] != 'U') {
		r->err = 1;
		return 0;
	}
	uint64_t v = get_be(r->p + 1, 8);
	r->p += 9;
	r->len -= 9;
	return v;
}

const unsigned char *rb_bytes(struct rbuf *r, size_t *n)
{
	*n = 0;
	if (r->err || r->len < 5 || r->p[0] != 'B') {
		r->err = 1;
		return NULL;
	}
	size_t len = (size_t)get_be(r->p + 1, 4);
	if (len > r->len - 5) {
		r->err = 1;
		return NULL;
	}
	const unsigned char *v = r->p + 5;
	r->p += 5 + len;
	r->len -= 5 + len;
	*n = len;
	return v;
}

void reply_free(struct reply *rep)
{
	free(rep->buf);
	rep->buf = NULL;
	rep->r.p = NULL;
	rep->r.len = 0;
}

/* Library state. */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_init;                 /* C_Initialize succeeded in process g_pid */
static pid_t g_pid;
static unsigned long g_gen;        /* bumped by C_Initialize and C_Finalize */
static char g_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static unsigned char g_app[16];
static int g_idle[IDLE_MAX];
static int g_nidle;

static void close_idle_locked(void)
{
	for (int i = 0; i < g_nidle; i++)
		close(g_idle[i]);
	g_nidle = 0;
}

static int random_bytes(unsigned char *p, size_t n)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	while (got < n) {
		ssize_t k = read(fd, p + got, n - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			close(fd);
			return -1;
		}
		got += (size_t)k;
	}
	close(fd);
	return 0;
}

int wire_initialized(void)
{
	pthread_mutex_lock(&g_mu);
	int ok = g_init && g_pid == getpid();
	pthread_mutex_unlock(&g_mu);
	return ok;
}

CK_RV wire_initialize(void)
{
	pthread_mutex_lock(&g_mu);
	if (g_init && g_pid == getpid()) {
		pthread_mutex_unlock(&g_mu);
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	}
	if (g_init) {
		/* A child after fork: the inherited connections are the parent's. */
		for (int i = 0; i < g_nidle; i++)
			close(g_idle[i]);
		g_nidle = 0;
		g_init = 0;
	}
	const char *path = getenv(SOCKET_ENV);
	if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof(g_path)) {
		pthread_mutex_unlock(&g_mu);
		fprintf(stderr, "libqpki-testtoken: set %s to the socket of qpki-testtokend (a path shorter than %zu bytes)\n",
			SOCKET_ENV, sizeof(g_path));
		return CKR_GENERAL_ERROR;
	}
	if (random_bytes(g_app, sizeof(g_app)) < 0) {
		pthread_mutex_unlock(&g_mu);
		return CKR_GENERAL_ERROR;
	}
	strcpy(g_path, path);
	g_pid = getpid();
	g_gen++;
	g_init = 1;
	pthread_mutex_unlock(&g_mu);
	return CKR_OK;
}

CK_RV wire_finalize(void)
{
	pthread_mutex_lock(&g_mu);
	if (!g_init || g_pid != getpid()) {
		pthread_mutex_unlock(&g_mu);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	close_idle_locked();
	g_init = 0;
	g_gen++;
	pthread_mutex_unlock(&g_mu);
	return CKR_OK;
}

/* Sockets. */

static int send_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int recv_all(int fd, unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = recv(fd, p, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* send_frame writes w, whose first 4 bytes are reserved for the length. */
static int send_frame(int fd, struct wbuf *w)
{
	if (w->err || w->p == NULL || w->len < 4)
		return -1;
	put_be(w->p, w->len - 4, 4);
	return send_all(fd, w->p, w->len);
}

static int recv_frame(int fd, unsigned char **out, size_t *outlen)
{
	unsigned char hdr[4];
	*out = NULL;
	if (recv_all(fd, hdr, 4) < 0)
		return -1;
	size_t n = (size_t)get_be(hdr, 4);
	if (n == 0 || n > WIRE_MAX_FRAME)
		return -1;
	unsigned char *p = malloc(n);
	if (p == NULL)
		return -1;
	if (recv_all(fd, p, n) < 0) {
		free(p);
		return -1;
	}
	*out = p;
	*outlen = n;
	return 0;
}

static int dial(void)
{
	char path[sizeof(g_path)];
	unsigned char app[sizeof(g_app)];
	pthread_mutex_lock(&g_mu);
	memcpy(path, g_path, sizeof(path));
	memcpy(app, g_app, sizeof(app));
	pthread_mutex_unlock(&g_mu);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = IO_TIMEOUT_SECONDS};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
	int rc;
	do {
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	} while (rc < 0 && errno == EINTR);
	if (rc < 0) {
		close(fd);
		return -1;
	}

	struct wbuf w;
	wb_init(&w, OP_HELLO);
	wb_u64(&w, WIRE_VERSION);
	wb_bytes(&w, app, sizeof(app));
	wb_u64(&w, sizeof(CK_ULONG));
	wb_u64(&w, (uint64_t)getpid());
	unsigned char *buf = NULL;
	size_t len = 0;
	int ok = send_frame(fd, &w) == 0 && recv_frame(fd, &buf, &len) == 0;
	wb_free(&w);
	if (ok) {
		struct rbuf r = {buf, len, 0};
		uint64_t rv = rb_u64(&r);
		rb_u64(&r); /* the daemon's epoch */
		ok = !r.err && rv == CKR_OK;
	}
	free(buf);
	if (!ok) {
		close(fd);
		return -1;
	}
	return fd;
}

/* conn_get returns a pooled connection (reused = 1) or a new one. */
static int conn_get(int *reused, unsigned long *gen)
{
	pthread_mutex_lock(&g_mu);
	*gen = g_gen;
	if (g_nidle > 0) {
		int fd = g_idle[--g_nidle];
		pthread_mutex_unlock(&g_mu);
		*reused = 1;
		return fd;
	}
	pthread_mutex_unlock(&g_mu);
	*reused = 0;
	return dial();
}

static void conn_put(int fd, unsigned long gen)
{
	pthread_mutex_lock(&g_mu);
	if (g_init && gen == g_gen && g_pid == getpid() && g_nidle < IDLE_MAX) {
		g_idle[g_nidle++] = fd;
		fd = -1;
	}
	pthread_mutex_unlock(&g_mu);
	if (fd >= 0)
		close(fd);
}

CK_RV wire_call(struct wbuf *req, struct reply *rep, int on_session)
{
	CK_RV unreachable = on_session ? CKR_DEVICE_REMOVED : CKR_DEVICE_ERROR;
	rep->buf = NULL;
	rep->r.p = NULL;
	rep->r.len = 0;
	rep->r.err = 0;
	if (req->err)
		return CKR_HOST_MEMORY;
	for (int attempt = 0; attempt < 2; attempt++) {
		int reused;
		unsigned long gen;
		int fd = conn_get(&reused, &gen);
		if (fd < 0)
			return unreachable;
		unsigned char *buf;
		size_t len;
		if (send_frame(fd, req) == 0 && recv_frame(fd, &buf, &len) == 0) {
			conn_put(fd, gen);
			rep->buf = buf;
			rep->r.p = buf;
			rep->r.len = len;
			CK_RV rv = (CK_RV)rb_u64(&rep->r);
			if (rep->r.err)
				return CKR_DEVICE_ERROR;
			return rv;
		}
		close(fd);
		/*
		 * A pooled connection may have been closed by a daemon that
		 * restarted since: try once more on a fresh one.
		 */
		if (!reused)
			break;
	}
	return unreachable;
}
