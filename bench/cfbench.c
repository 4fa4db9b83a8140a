/*
 * cfbench: a WebSocket fan-out load generator (issue 4, first slice).
 *
 * One thread, one epoll set, level-triggered. Publishers and subscribers
 * are plain non-blocking TCP sockets speaking RFC 6455 by hand, so the
 * generator costs as little CPU as possible next to the server it
 * measures. See bench/README.md for usage and the measurement method.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define HDR_LEN 32u             /* pub(4) seq(12) ts(16), lowercase hex */
#define RBUF_SIZE (256u * 1024u)
#define MAX_HEAD 8192u
#define MAX_FRAME (16u * 1024u * 1024u)
#define MAX_PUBS 64u
#define MAX_PIDS 8u
#define PUB_BACKLOG_MAX (256u * 1024u * 1024u)
#define TIMER_ID UINT64_MAX
#define NBUCKETS 1920u          /* log buckets, 32 per power of two */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode { M_OPEN, M_CLOSED, M_FLAT, M_IDLE };
enum cstate { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSED };

/* Kept small: 15,000 of these must stay cheap. */
struct conn {
	int fd;
	uint8_t state;
	uint8_t is_pub;
	uint8_t close_sent;
	uint8_t pad_;
	uint32_t idx;
	uint8_t *carry;         /* partial frame or response head, lazily */
	uint32_t carry_len;
	uint32_t carry_cap;
	char key[28];           /* Sec-WebSocket-Key while handshaking */
};

/* Duplicate / reorder detector per (subscriber, publisher). */
struct track {
	uint64_t window;        /* bit d: seq (hi - 1 - d) was seen */
	uint64_t hi;            /* highest seq seen + 1 */
};

struct pubq {
	uint8_t *buf;
	size_t off, len, cap;
};

struct opts {
	const char *host;
	int port;
	const char *path;
	const char *pub_path;
	char room[80];
	unsigned n, pubs, size, window, src_addrs, max_pending;
	unsigned connect_rate;
	uint64_t count;
	double rate, duration, timeout, connect_timeout, idle_wait;
	enum mode mode;
	bool pub_http;          /* publish with HTTP POST (nchan) */
	unsigned pub_base;      /* first publisher id in headers */
	int pids[MAX_PIDS];
	unsigned npids;
	bool quiet;
	const char *msg_log;    /* per-message timings, CSV */
};

struct stats {
	uint64_t deliveries, unique, dup, ooo, foreign, pings;
	uint64_t http_ok;       /* 2xx answers to POST publishes */
	uint64_t binary;        /* data messages in binary frames */
	uint64_t hist[NBUCKETS];
	uint64_t lat_max;
	unsigned closed_subs, errors;
};

static struct opts O;
static struct stats S;
static struct conn *conns;      /* [0, pubs) publishers, then subscribers */
static struct track *tracks;    /* n * pubs */
static uint32_t **dcount;       /* per publisher: deliveries of each seq */
/* With --msg-log, per message i (publisher i mod P, seq i div P): the
 * time stamped in it, when it was queued on its publisher, its first and
 * its last delivery. */
static uint64_t *m_stamp, *m_queued, *m_first, *m_last;
static struct pubq *pq;
static uint64_t per_pub;        /* messages each publisher owns */
static uint64_t sent, completed, next_msg;
static uint64_t t_start, t_last_send, t_last_delivery, t_progress;
static int epfd = -1, tfd = -1;
static uint8_t rbuf[RBUF_SIZE];
static uint64_t rng_state;
static unsigned nopen, npending, nstarted;
static struct sockaddr_in dst;
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("cfbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	S.errors++;
}

/* Masks need not be cryptographic here, only unpredictable per frame. */
static uint32_t rnd32(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	rng_state = x;
	return (uint32_t)(x >> 16);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (!q) {
		fputs("cfbench: out of memory\n", stderr);
		exit(1);
	}
	return q;
}

/* ---- latency histogram: log-linear, 32 sub-buckets per octave ------- */

static unsigned bucket_of(uint64_t v)
{
	unsigned e, sh;

	if (v < 64)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	sh = e - 5u;
	return sh * 32u + (unsigned)(v >> sh);
}

static uint64_t bucket_top(unsigned b)
{
	unsigned sh, m;

	if (b < 64)
		return b;
	sh = b / 32u - 1u;
	m = b - sh * 32u;
	return (((uint64_t)m + 1u) << sh) - 1u;
}

static void hist_add(uint64_t v)
{
	S.hist[bucket_of(v)]++;
	if (v > S.lat_max)
		S.lat_max = v;
}

static uint64_t hist_pct(double p)
{
	uint64_t total = 0, want, acc = 0;
	unsigned b;

	for (b = 0; b < NBUCKETS; b++)
		total += S.hist[b];
	if (total == 0)
		return 0;
	want = (uint64_t)(p / 100.0 * (double)total + 0.999999);
	if (want == 0)
		want = 1;
	for (b = 0; b < NBUCKETS; b++) {
		acc += S.hist[b];
		if (acc >= want)
			return bucket_top(b) < S.lat_max ?
			       bucket_top(b) : S.lat_max;
	}
	return S.lat_max;
}

/* ---- /proc readers ---------------------------------------------------- */

static double proc_cpu_s(void)
{
	double sum = 0;
	unsigned i;

	if (O.npids == 0)
		return -1;      /* reported as -1: not measured */
	for (i = 0; i < O.npids; i++) {
		char path[64], buf[1024], *p;
		unsigned long long ut, st, cut, cst;
		FILE *f;
		size_t n;

		snprintf(path, sizeof(path), "/proc/%d/stat", O.pids[i]);
		f = fopen(path, "r");
		if (!f)
			return -1;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');  /* comm may hold spaces */
		if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u "
				 "%*u %*u %*u %llu %llu %llu %llu",
				 &ut, &st, &cut, &cst) != 4)
			return -1;
		sum += (double)(ut + st + cut + cst) /
		       (double)sysconf(_SC_CLK_TCK);
	}
	return sum;
}

static long proc_rss_kib(void)
{
	long sum = 0;
	unsigned i;

	if (O.npids == 0)
		return -1;
	for (i = 0; i < O.npids; i++) {
		char path[64], line[256];
		long v = -1;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/status", O.pids[i]);
		f = fopen(path, "r");
		if (!f)
			return -1;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "VmRSS: %ld", &v) == 1)
				break;
		fclose(f);
		if (v < 0)
			return -1;
		sum += v;
	}
	return sum;
}

/* ---- connection plumbing ---------------------------------------------- */

static int ep_set(struct conn *c, uint32_t ev, int op)
{
	struct epoll_event e = { .events = ev, .data.u64 = c->idx };

	return epoll_ctl(epfd, op, c->fd, &e);
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->state == C_OPEN)
		nopen--;
	else if (c->state == C_CONNECTING || c->state == C_HANDSHAKE)
		npending--;
	if (!c->is_pub && c->state == C_OPEN)
		S.closed_subs++;
	c->state = C_CLOSED;
	free(c->carry);
	c->carry = NULL;
	c->carry_len = c->carry_cap = 0;
}

static void conn_error(struct conn *c, const char *what)
{
	fail("%s %u: %s", c->is_pub ? "publisher" : "subscriber",
	     c->is_pub ? c->idx : c->idx - O.pubs, what);
	conn_close(c);
}

static int carry_append(struct conn *c, const uint8_t *p, size_t n)
{
	if ((size_t)c->carry_len + n > MAX_FRAME + 16u)
		return -1;
	if (c->carry_len + n > c->carry_cap) {
		size_t cap = c->carry_cap ? c->carry_cap : 256;

		while (cap < c->carry_len + n)
			cap *= 2;
		c->carry = xrealloc(c->carry, cap);
		c->carry_cap = (uint32_t)cap;
	}
	memcpy(c->carry + c->carry_len, p, n);
	c->carry_len += (uint32_t)n;
	return 0;
}

static void conn_start(struct conn *c)
{
	struct sockaddr_in src = { .sin_family = AF_INET };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		       0);
	if (c->fd < 0) {
		fail("socket: %s", strerror(errno));
		c->state = C_CLOSED;
		return;
	}
	/* Spread over 127.0.0.x; the port is picked at connect() time. */
	src.sin_addr.s_addr = htonl(0x7f000001u + c->idx % O.src_addrs);
	setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		   sizeof(one));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
	     errno != EINPROGRESS)) {
		c->state = C_CONNECTING;
		npending++;
		conn_error(c, strerror(errno));
		return;
	}
	c->state = C_CONNECTING;
	npending++;
	nstarted++;
	if (ep_set(c, EPOLLOUT, EPOLL_CTL_ADD) < 0)
		conn_error(c, "epoll_ctl");
}

static void ws_accept_of(const char *key, char out[32])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char cat[64];

	snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
	EVP_Digest(cat, strlen(cat), md, &mdlen, EVP_sha1(), NULL);
	EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

static void send_upgrade(struct conn *c)
{
	unsigned char raw[16];
	char req[1024];
	int n;
	ssize_t w;

	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
		conn_error(c, "getrandom");
		return;
	}
	EVP_EncodeBlock((unsigned char *)c->key, raw, sizeof(raw));
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
		     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n\r\n",
		     c->is_pub ? O.pub_path : O.path, O.host, O.port, c->key);
	w = write(c->fd, req, (size_t)n);
	/* A fresh socket's send buffer always takes a 1 KiB request. */
	if (w != n) {
		conn_error(c, "short write of the upgrade request");
		return;
	}
	c->state = C_HANDSHAKE;
	if (ep_set(c, EPOLLIN, EPOLL_CTL_MOD) < 0)
		conn_error(c, "epoll_ctl");
}

static void on_connected(struct conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		conn_error(c, strerror(err ? err : errno));
		return;
	}
	if (c->is_pub && O.pub_http) {
		/* An HTTP publisher has no handshake: open once connected. */
		c->state = C_OPEN;
		npending--;
		nopen++;
		if (ep_set(c, EPOLLIN, EPOLL_CTL_MOD) < 0)
			conn_error(c, "epoll_ctl");
		return;
	}
	send_upgrade(c);
}

/* Case-insensitive search for a header's value in a response head. */
static const char *head_value(const char *head, const char *name,
			      size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = strstr(head, "\r\n");

	while (p && p[2] != '\r') {
		const char *line = p + 2, *end = strstr(line, "\r\n");

		if (!end)
			return NULL;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;

			while (*v == ' ' || *v == '\t')
				v++;
			*vlen = (size_t)(end - v);
			while (*vlen && (v[*vlen - 1] == ' ' ||
					 v[*vlen - 1] == '\t'))
				(*vlen)--;
			return v;
		}
		p = end;
	}
	return NULL;
}

static void parse_frames(struct conn *c, const uint8_t *p, size_t n,
			 uint64_t now);

/* Returns bytes of head consumed, 0 if more is needed, -1 on error. */
static long check_response(struct conn *c, const char *buf, size_t n)
{
	char head[MAX_HEAD + 1], want[32];
	const char *end, *v;
	size_t hl, vl = 0;

	end = memmem(buf, n, "\r\n\r\n", 4);
	if (!end)
		return n >= MAX_HEAD ? -1 : 0;
	hl = (size_t)(end - buf) + 4;
	if (hl > MAX_HEAD)
		return -1;
	memcpy(head, buf, hl);
	head[hl] = '\0';
	if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
		char *eol = strstr(head, "\r\n");

		*eol = '\0';
		fail("upgrade refused: %s", head);
		return -1;
	}
	ws_accept_of(c->key, want);
	v = head_value(head, "Sec-WebSocket-Accept", &vl);
	if (!v || vl != strlen(want) || memcmp(v, want, vl) != 0) {
		fail("bad or missing Sec-WebSocket-Accept");
		return -1;
	}
	return (long)hl;
}

static void on_handshake_data(struct conn *c, const uint8_t *p, size_t n,
			      uint64_t now)
{
	const uint8_t *buf = p;
	size_t len = n;
	long hl;

	if (c->carry_len) {
		if (carry_append(c, p, n) < 0) {
			conn_error(c, "response head too large");
			return;
		}
		buf = c->carry;
		len = c->carry_len;
	}
	hl = check_response(c, (const char *)buf, len);
	if (hl < 0) {
		conn_error(c, "handshake failed");
		return;
	}
	if (hl == 0) {
		if (!c->carry_len && carry_append(c, p, n) < 0)
			conn_error(c, "response head too large");
		return;
	}
	c->state = C_OPEN;
	npending--;
	nopen++;
	if (c->carry_len) {
		/* Move the tail after the head to the front, then parse. */
		size_t rest = len - (size_t)hl;
		uint8_t *tmp = c->carry;

		c->carry = NULL;
		c->carry_len = c->carry_cap = 0;
		if (rest)
			parse_frames(c, tmp + hl, rest, now);
		free(tmp);
	} else if (len > (size_t)hl) {
		parse_frames(c, buf + hl, len - (size_t)hl, now);
	}
}

/* ---- frames --------------------------------------------------------- */

static size_t frame_header(uint8_t *h, unsigned op, uint64_t len,
			   uint32_t mask)
{
	size_t n = 2;

	h[0] = (uint8_t)(0x80u | op);
	if (len < 126) {
		h[1] = (uint8_t)(0x80u | len);
	} else if (len <= 0xffff) {
		h[1] = 0x80u | 126u;
		h[2] = (uint8_t)(len >> 8);
		h[3] = (uint8_t)len;
		n = 4;
	} else {
		int i;

		h[1] = 0x80u | 127u;
		for (i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	memcpy(h + n, &mask, 4);
	return n + 4;
}

static void mask_bytes(uint8_t *p, size_t n, uint32_t mask)
{
	uint8_t m[4];
	size_t i;

	memcpy(m, &mask, 4);
	for (i = 0; i < n; i++)
		p[i] ^= m[i & 3];
}

/* Control frames from a client: one small write, best effort. */
static void send_control(struct conn *c, unsigned op, const uint8_t *p,
			 size_t n)
{
	uint8_t f[14 + 125];
	uint32_t mask = rnd32();
	size_t h = frame_header(f, op, n, mask);

	memcpy(f + h, p, n);
	mask_bytes(f + h, n, mask);
	if (write(c->fd, f, h + n) != (ssize_t)(h + n))
		fail("short write of a control frame");
}

static int hexval(const uint8_t *p, unsigned n, uint64_t *out)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++) {
		unsigned d = p[i];

		if (d >= '0' && d <= '9')
			d -= '0';
		else if (d >= 'a' && d <= 'f')
			d = d - 'a' + 10;
		else
			return -1;
		v = v << 4 | d;
	}
	*out = v;
	return 0;
}

static void count_unique(uint64_t pub, uint64_t seq)
{
	S.unique++;
	if (++dcount[pub][seq] == O.n)
		completed++;
}

static void on_message(struct conn *c, const uint8_t *p, size_t n,
		       uint64_t now)
{
	uint64_t pub, seq, ts, s;
	struct track *t;

	if (c->is_pub)
		return; /* a publisher hears its own room: ignored */
	S.deliveries++;
	t_last_delivery = now;
	t_progress = now;
	if (n < HDR_LEN || hexval(p, 4, &pub) || hexval(p + 4, 12, &seq) ||
	    hexval(p + 16, 16, &ts) || pub < O.pub_base ||
	    (pub -= O.pub_base) >= O.pubs || seq >= per_pub) {
		S.foreign++;
		return;
	}
	hist_add(now > ts ? now - ts : 0);
	if (m_first) {
		uint64_t i = seq * O.pubs + pub;

		if (!m_first[i])
			m_first[i] = now;
		m_last[i] = now;
	}
	t = &tracks[(size_t)(c->idx - O.pubs) * O.pubs + pub];
	s = seq + 1;
	if (s > t->hi) {
		uint64_t sh = s - t->hi;

		t->window = sh >= 64 ? 0 : t->window << sh;
		t->window |= 1;
		t->hi = s;
		count_unique(pub, seq);
	} else if (t->hi - s >= 64) {
		/* Too old to tell a duplicate: counted as reordered. */
		S.ooo++;
		count_unique(pub, seq);
	} else if (t->window & (1ull << (t->hi - s))) {
		S.dup++;
	} else {
		t->window |= 1ull << (t->hi - s);
		S.ooo++;
		count_unique(pub, seq);
	}
}

/* Returns bytes consumed (whole frames only), or -1 after an error. */
static long parse_one(struct conn *c, const uint8_t *p, size_t n,
		      uint64_t now)
{
	uint64_t len;
	size_t h = 2;
	unsigned op;

	if (n < 2)
		return 0;
	op = p[0] & 0x0fu;
	if ((p[0] & 0x70u) || (p[1] & 0x80u)) {
		conn_error(c, "reserved bits or masked server frame");
		return -1;
	}
	len = p[1] & 0x7fu;
	if (len == 126) {
		if (n < 4)
			return 0;
		len = (uint64_t)p[2] << 8 | p[3];
		h = 4;
	} else if (len == 127) {
		int i;

		if (n < 10)
			return 0;
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | p[2 + i];
		h = 10;
	}
	if (len > MAX_FRAME) {
		conn_error(c, "frame too large");
		return -1;
	}
	if (n < h + len)
		return 0;
	if (!(p[0] & 0x80u) || op == 0) {
		/* Servers under test never fragment; see README. */
		conn_error(c, "fragmented message (unsupported)");
		return -1;
	}
	switch (op) {
	case 2:
		S.binary++;
		/* fall through */
	case 1:
		on_message(c, p + h, (size_t)len, now);
		break;
	case 8:
		if (!c->close_sent) {
			c->close_sent = 1;
			send_control(c, 8, p + h, len >= 2 ? 2 : 0);
		}
		conn_error(c, "server closed the connection");
		return -1;
	case 9:
		S.pings++;
		if (len <= 125)
			send_control(c, 10, p + h, (size_t)len);
		break;
	case 10:
		break;
	default:
		conn_error(c, "unknown opcode");
		return -1;
	}
	return (long)(h + len);
}

static void parse_frames(struct conn *c, const uint8_t *p, size_t n,
			 uint64_t now)
{
	size_t off = 0;

	for (;;) {
		long r = parse_one(c, p + off, n - off, now);

		if (r < 0)
			return;
		if (r == 0)
			break;
		off += (size_t)r;
	}
	if (off < n && carry_append(c, p + off, n - off) < 0)
		conn_error(c, "partial frame too large");
}

/*
 * One HTTP response of a POST publisher: returns its length, 0 if more
 * is needed, -1 on a response we cannot frame or a non-2xx status.
 * Only Content-Length bodies: nginx answers POSTs that way.
 */
static long http_response_len(struct conn *c, const uint8_t *p, size_t n)
{
	char head[MAX_HEAD + 1];
	const char *end, *v;
	size_t hl, vl = 0;
	unsigned long body = 0;

	end = memmem(p, n, "\r\n\r\n", 4);
	if (!end)
		return n >= MAX_HEAD ? -1 : 0;
	hl = (size_t)(end - (const char *)p) + 4;
	if (hl > MAX_HEAD)
		return -1;
	memcpy(head, p, hl);
	head[hl] = '\0';
	if (strncmp(head, "HTTP/1.1 2", 10) != 0) {
		char *eol = strstr(head, "\r\n");

		*eol = '\0';
		fail("publisher %u: %s", c->idx, head);
		return -1;
	}
	v = head_value(head, "Content-Length", &vl);
	if (v)
		body = strtoul(v, NULL, 10);
	else if (head_value(head, "Transfer-Encoding", &vl))
		return -1;
	if (n < hl + body)
		return 0;
	return (long)(hl + body);
}

static void http_parse(struct conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0;

	for (;;) {
		long r = http_response_len(c, p + off, n - off);

		if (r < 0) {
			conn_error(c, "bad HTTP response to a publish");
			return;
		}
		if (r == 0)
			break;
		S.http_ok++;
		off += (size_t)r;
	}
	if (off < n && carry_append(c, p + off, n - off) < 0)
		conn_error(c, "HTTP response too large");
}

static void on_http_data(struct conn *c, const uint8_t *p, size_t n)
{
	uint8_t *old;
	uint32_t len;

	if (!c->carry_len) {
		http_parse(c, p, n);
		return;
	}
	if (carry_append(c, p, n) < 0) {
		conn_error(c, "HTTP response too large");
		return;
	}
	old = c->carry;
	len = c->carry_len;
	c->carry = NULL;
	c->carry_len = c->carry_cap = 0;
	http_parse(c, old, len);
	free(old);
}

static void on_data(struct conn *c, const uint8_t *p, size_t n, uint64_t now)
{
	uint8_t *old;
	uint32_t len;

	if (c->state == C_HANDSHAKE) {
		on_handshake_data(c, p, n, now);
		return;
	}
	if (c->is_pub && O.pub_http) {
		on_http_data(c, p, n);
		return;
	}
	if (!c->carry_len) {
		parse_frames(c, p, n, now);
		return;
	}
	if (carry_append(c, p, n) < 0) {
		conn_error(c, "partial frame too large");
		return;
	}
	/* Detach the carry so parse_frames can store a new tail. */
	old = c->carry;
	len = c->carry_len;
	c->carry = NULL;
	c->carry_len = c->carry_cap = 0;
	parse_frames(c, old, len, now);
	free(old);
}

static void on_readable(struct conn *c)
{
	for (;;) {
		ssize_t r = read(c->fd, rbuf, sizeof(rbuf));

		if (r > 0) {
			on_data(c, rbuf, (size_t)r, now_ns());
			if (c->state == C_CLOSED || (size_t)r < sizeof(rbuf))
				return;
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_error(c, r == 0 ? "connection closed by server" :
			   strerror(errno));
		return;
	}
}

/* ---- publishing ----------------------------------------------------- */

static void pub_flush(unsigned i)
{
	struct pubq *q = &pq[i];
	struct conn *c = &conns[i];

	while (q->off < q->len && c->state == C_OPEN) {
		ssize_t w = write(c->fd, q->buf + q->off, q->len - q->off);

		if (w < 0) {
			if (errno == EAGAIN)
				break;
			if (errno == EINTR)
				continue;
			conn_error(c, strerror(errno));
			return;
		}
		q->off += (size_t)w;
	}
	if (q->off == q->len)
		q->off = q->len = 0;
	if (c->state == C_OPEN)
		ep_set(c, EPOLLIN | (q->len ? EPOLLOUT : 0u), EPOLL_CTL_MOD);
}

static void put_hex(uint8_t *p, unsigned n, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";

	while (n--) {
		p[n] = (uint8_t)digits[v & 15u];
		v >>= 4;
	}
}

/* Writes the request head of one POST publish; returns its length. */
static size_t http_head(uint8_t *f, size_t cap)
{
	int n = snprintf((char *)f, cap,
			 "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
			 "Content-Type: text/plain\r\n"
			 "Content-Length: %u\r\n\r\n",
			 O.pub_path, O.host, O.port, O.size);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/*
 * Queues message msg on its publisher: a masked text frame, or with
 * --pub-http one POST request (keep-alive, pipelined: nchan answers
 * each in order and every answer is counted).
 */
static void pub_enqueue(uint64_t msg, uint64_t ts)
{
	unsigned pub = (unsigned)(msg % O.pubs);
	struct pubq *q = &pq[pub];
	uint64_t seq = msg / O.pubs;
	size_t need = 14 + O.size + (O.pub_http ? 512 : 0), h;
	uint32_t mask = rnd32();
	uint8_t *f;
	uint8_t hdr[HDR_LEN];

	if (q->len + need > q->cap) {
		if (q->len + need > PUB_BACKLOG_MAX) {
			fail("publisher backlog over %u bytes",
			     PUB_BACKLOG_MAX);
			stop_flag = 1;
			return;
		}
		q->cap = q->cap ? q->cap * 2 : 65536;
		while (q->cap < q->len + need)
			q->cap *= 2;
		q->buf = xrealloc(q->buf, q->cap);
	}
	f = q->buf + q->len;
	h = O.pub_http ? http_head(f, 512) : frame_header(f, 1, O.size, mask);
	put_hex(hdr, 4, pub + O.pub_base);
	put_hex(hdr + 4, 12, seq);
	put_hex(hdr + 16, 16, ts);
	memcpy(f + h, hdr, HDR_LEN);
	memset(f + h + HDR_LEN, 'x', O.size - HDR_LEN);
	if (!O.pub_http)
		mask_bytes(f + h, O.size, mask);
	q->len += h + O.size;
	sent++;
	t_last_send = now_ns();
	t_progress = t_last_send;
	if (m_queued) {
		m_stamp[msg] = ts;
		m_queued[msg] = t_last_send;
	}
}

static uint64_t intended(uint64_t msg)
{
	return t_start + (uint64_t)((double)msg * 1e9 / O.rate);
}

static void arm_timer(uint64_t at)
{
	struct itimerspec its = { 0 };

	its.it_value.tv_sec = (time_t)(at / 1000000000u);
	its.it_value.tv_nsec = (long)(at % 1000000000u);
	if (at == 0)
		its.it_value.tv_nsec = 1;
	timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void flush_all(void)
{
	unsigned i;

	for (i = 0; i < O.pubs; i++)
		if (pq[i].len)
			pub_flush(i);
}

/* Open loop: every message due by now goes out with its intended time. */
static void drive_open(uint64_t now)
{
	while (next_msg < O.count && intended(next_msg) <= now) {
		pub_enqueue(next_msg, intended(next_msg));
		next_msg++;
	}
	flush_all();
	if (next_msg < O.count)
		arm_timer(intended(next_msg));
}

static void drive_closed(void)
{
	uint64_t now = now_ns();

	while (next_msg < O.count && sent - completed < O.window)
		pub_enqueue(next_msg++, now);
	flush_all();
}

static void drive_flat(void)
{
	uint64_t now = now_ns();

	while (next_msg < O.count)
		pub_enqueue(next_msg++, now);
	flush_all();
}

/* ---- phases ---------------------------------------------------------- */

static void dispatch(struct epoll_event *e)
{
	struct conn *c;

	if (e->data.u64 == TIMER_ID) {
		uint64_t x;

		if (read(tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
			fail("timerfd read");
		return;
	}
	c = &conns[e->data.u64];
	if (c->state == C_CLOSED)
		return;
	if (c->state == C_CONNECTING) {
		on_connected(c);
		return;
	}
	if (e->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		on_readable(c);
	if (c->state == C_OPEN && c->is_pub && (e->events & EPOLLOUT))
		pub_flush(c->idx);
}

static void poll_once(int timeout_ms)
{
	struct epoll_event ev[512];
	int n, i;

	n = epoll_wait(epfd, ev, 512, timeout_ms);
	for (i = 0; i < n; i++)
		dispatch(&ev[i]);
}

/* Opens conns[first, total); publishers first so none misses a message. */
static int connect_all(unsigned first, unsigned total)
{
	uint64_t t0 = now_ns(), deadline;
	unsigned want = total - first;
	struct itimerspec its = { .it_interval.tv_nsec = 1000000,
				  .it_value.tv_nsec = 1000000 };

	deadline = t0 + (uint64_t)(O.connect_timeout * 1e9);
	timerfd_settime(tfd, 0, &its, NULL);
	nstarted = first;
	while (nopen < want && !stop_flag) {
		uint64_t now = now_ns();
		double el = (double)(now - t0) / 1e9;
		uint64_t budget = (uint64_t)(el * O.connect_rate) + 1;

		if (S.errors)
			break;
		if (now > deadline) {
			fail("connect phase timed out: %u of %u open",
			     nopen, want);
			break;
		}
		while (nstarted < total && nstarted - first < budget &&
		       npending < O.max_pending && !S.errors)
			conn_start(&conns[nstarted]);
		poll_once(10);
	}
	memset(&its, 0, sizeof(its));
	timerfd_settime(tfd, 0, &its, NULL);
	return nopen == want && !S.errors ? 0 : -1;
}

static bool run_done(uint64_t now)
{
	uint64_t expect = (uint64_t)O.n * O.count;

	if (stop_flag || S.errors)
		return true;
	/* An HTTP publisher's last answers may trail the deliveries. */
	if (next_msg == O.count && S.unique >= expect &&
	    (!O.pub_http || S.http_ok >= sent))
		return true;
	if (next_msg == O.count || O.mode == M_CLOSED)
		return now > t_progress + (uint64_t)(O.timeout * 1e9);
	return false;
}

static void run_load(void)
{
	t_start = now_ns() + 1000000; /* 1 ms to settle */
	t_progress = t_start;
	if (O.mode == M_OPEN)
		arm_timer(t_start);
	else
		arm_timer(0);
	while (!run_done(now_ns())) {
		poll_once(20);
		if (now_ns() < t_start)
			continue;
		if (O.mode == M_OPEN)
			drive_open(now_ns());
		else if (O.mode == M_CLOSED)
			drive_closed();
		else
			drive_flat();
	}
}

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* ---- report -------------------------------------------------------- */

static const char *mode_name(void)
{
	static const char *names[] = { "open", "closed", "flat", "idle" };

	return names[O.mode];
}

/* The generator's own CPU seconds: shows when it, not the server, is
 * the bottleneck (it shares the machine). */
static double self_cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return -1;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double gen_cpu0;

static void report_load(double cpu0, double cpu1)
{
	uint64_t expect = (uint64_t)O.n * sent;
	uint64_t lost = expect > S.unique ? expect - S.unique : 0;
	uint64_t t_end = t_last_delivery > t_start ? t_last_delivery : 0;
	double el = t_end ? (double)(t_end - t_start) / 1e9 : 0;
	double dps = el > 0 ? (double)S.deliveries / el : 0;
	double cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
	double cpm = cpu >= 0 && S.deliveries ?
		     cpu * 1e6 / (double)S.deliveries : -1;
	double p50 = (double)hist_pct(50) / 1e6, p90 = hist_pct(90) / 1e6;
	double p99 = (double)hist_pct(99) / 1e6;
	double mx = (double)S.lat_max / 1e6;

	printf("cfbench %s n=%u pubs=%u size=%u sent=%" PRIu64
	       " deliveries=%" PRIu64 " (%.0f/s) lat_ms p50=%.3f p90=%.3f"
	       " p99=%.3f max=%.3f lost=%" PRIu64 " dup=%" PRIu64
	       " ooo=%" PRIu64 " cpu_s_per_1M=%.3f errors=%u\n",
	       mode_name(), O.n, O.pubs, O.size, sent, S.deliveries, dps,
	       p50, p90, p99, mx, lost, S.dup, S.ooo, cpm, S.errors);
	printf("{\"mode\":\"%s\",\"n\":%u,\"publishers\":%u,\"size\":%u,"
	       "\"rate\":%.3f,\"window\":%u,\"sent\":%" PRIu64 ","
	       "\"expected\":%" PRIu64 ",\"deliveries\":%" PRIu64 ","
	       "\"unique\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"dup\":%" PRIu64
	       ",\"ooo\":%" PRIu64 ",\"foreign\":%" PRIu64 ","
	       "\"elapsed_s\":%.6f,\"deliveries_per_s\":%.1f,"
	       "\"lat_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,"
	       "\"max\":%.4f},\"gen_cpu_s\":%.3f,\"server_cpu_s\":%.3f,"
	       "\"cpu_s_per_1m\":%.4f,\"pings\":%" PRIu64 ","
	       "\"http_ok\":%" PRIu64 ",\"binary\":%" PRIu64 ",\"closed_subs\":%u,"
	       "\"errors\":%u}\n",
	       mode_name(), O.n, O.pubs, O.size,
	       O.mode == M_OPEN ? O.rate : 0.0, O.window, sent, expect,
	       S.deliveries, S.unique, lost, S.dup, S.ooo, S.foreign, el, dps,
	       p50, p90, p99, mx, self_cpu_s() - gen_cpu0, cpu, cpm,
	       S.pings, S.http_ok, S.binary, S.closed_subs, S.errors);
}

/*
 * One line per message, times in microseconds: the time stamped in it
 * (the intended send time in open loop, else the time its batch was
 * queued) relative to the start, how late the generator queued it, and
 * its first and last delivery counted from the stamp, as the latency
 * histogram counts (-1: never delivered). Splits a latency tail into
 * the generator's lateness, the time to the first recipient and the
 * spread over the recipients.
 */
static int write_msg_log(void)
{
	FILE *f = fopen(O.msg_log, "w");
	uint64_t i;

	if (!f) {
		fprintf(stderr, "cfbench: %s: %s\n", O.msg_log,
			strerror(errno));
		return -1;
	}
	fputs("msg,stamp_us,late_us,first_us,last_us\n", f);
	for (i = 0; i < sent; i++) {
		uint64_t ts = m_stamp[i];
		double late = (double)(m_queued[i] - ts) / 1e3;

		if (m_first[i])
			fprintf(f, "%" PRIu64 ",%.1f,%.1f,%.1f,%.1f\n", i,
				(double)(ts - t_start) / 1e3, late,
				(double)(m_first[i] - ts) / 1e3,
				(double)(m_last[i] - ts) / 1e3);
		else
			fprintf(f, "%" PRIu64 ",%.1f,%.1f,-1,-1\n", i,
				(double)(ts - t_start) / 1e3, late);
	}
	return fclose(f) == 0 ? 0 : -1;
}

static void report_idle(long rss0, long rss1)
{
	double per = rss0 >= 0 && rss1 >= 0 && O.n ?
		     (double)(rss1 - rss0) * 1024.0 / O.n : -1;

	printf("cfbench idle n=%u rss_kib before=%ld after=%ld "
	       "bytes_per_conn=%.0f errors=%u\n", O.n, rss0, rss1, per,
	       S.errors);
	printf("{\"mode\":\"idle\",\"n\":%u,\"rss_kib_before\":%ld,"
	       "\"rss_kib_after\":%ld,\"bytes_per_conn\":%.1f,"
	       "\"pings\":%" PRIu64 ",\"closed_subs\":%u,\"errors\":%u}\n",
	       O.n, rss0, rss1, per, S.pings, S.closed_subs, S.errors);
}

/* ---- options ------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("usage: cfbench --port P [options]\n"
	      "  --host ADDR          server IPv4 address (127.0.0.1)\n"
	      "  --port P             server port (required)\n"
	      "  --room R             room (default bench-<pid>-<time>)\n"
	      "  --path PATH          subscriber path (/ws?room=R)\n"
	      "  --pub-path PATH      publisher path (same as --path)\n"
	      "  --pub-http           publish by HTTP POST to --pub-path\n"
	      "  --pub-id K           first publisher id in messages (0);\n"
	      "                       other ids count as foreign\n"
	      "  -n, --subscribers N  subscriber connections (100)\n"
	      "  --publishers P       publisher connections (1)\n"
	      "  --size B             payload bytes, >= 32 (64)\n"
	      "  --rate R             open loop: messages/s (100)\n"
	      "  --duration S         open loop: seconds of sending (5)\n"
	      "  --count M            messages (rate*duration; 1000 else)\n"
	      "  --window W           closed loop, W undelivered at most\n"
	      "  --flat               write --count messages at once\n"
	      "  --idle               connect, wait, report server RSS/conn\n"
	      "  --idle-wait S        idle mode: wait before reading (2)\n"
	      "  --timeout S          give up S after the last progress (5)\n"
	      "  --connect-timeout S  connect phase limit (60)\n"
	      "  --connect-rate R     new connections per second (20000)\n"
	      "  --max-pending K      handshakes in flight (512)\n"
	      "  --src-addrs K        source addresses 127.0.0.1.. (64)\n"
	      "  --server-pid PID     repeatable: CPU and RSS are summed\n"
	      "  --msg-log FILE       write per-message timings (CSV)\n",
	      f);
}

static int parse_opts(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", 1, 0, 'H' }, { "port", 1, 0, 'p' },
		{ "room", 1, 0, 'R' }, { "path", 1, 0, 'P' },
		{ "pub-path", 1, 0, 'Q' }, { "subscribers", 1, 0, 'n' },
		{ "publishers", 1, 0, 'u' }, { "size", 1, 0, 's' },
		{ "rate", 1, 0, 'r' }, { "duration", 1, 0, 'd' },
		{ "count", 1, 0, 'c' }, { "window", 1, 0, 'w' },
		{ "flat", 0, 0, 'f' }, { "idle", 0, 0, 'i' },
		{ "idle-wait", 1, 0, 'I' }, { "timeout", 1, 0, 't' },
		{ "connect-timeout", 1, 0, 'T' },
		{ "connect-rate", 1, 0, 'C' }, { "max-pending", 1, 0, 'k' },
		{ "src-addrs", 1, 0, 'a' }, { "server-pid", 1, 0, 'S' },
		{ "pub-http", 0, 0, 'X' }, { "pub-id", 1, 0, 'B' },
		{ "msg-log", 1, 0, 'M' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 }
	};
	static char path[200], ppath[200];
	bool have_count = false;
	int o;

	O = (struct opts){ .host = "127.0.0.1", .n = 100, .pubs = 1,
			   .size = 64, .rate = 100, .duration = 5,
			   .timeout = 5, .connect_timeout = 60,
			   .idle_wait = 2, .connect_rate = 20000,
			   .max_pending = 512, .src_addrs = 64 };
	snprintf(O.room, sizeof(O.room), "bench-%d-%ld", (int)getpid(),
		 (long)time(NULL));
	while ((o = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		switch (o) {
		case 'H': O.host = optarg; break;
		case 'p': O.port = atoi(optarg); break;
		case 'R': snprintf(O.room, sizeof(O.room), "%s", optarg);
			  break;
		case 'P': O.path = optarg; break;
		case 'Q': O.pub_path = optarg; break;
		case 'n': O.n = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'u': O.pubs = (unsigned)strtoul(optarg, NULL, 10);
			  break;
		case 's': O.size = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': O.rate = atof(optarg); break;
		case 'd': O.duration = atof(optarg); break;
		case 'c': O.count = strtoull(optarg, NULL, 10);
			  have_count = true; break;
		case 'w': O.window = (unsigned)strtoul(optarg, NULL, 10);
			  O.mode = M_CLOSED; break;
		case 'f': O.mode = M_FLAT; break;
		case 'i': O.mode = M_IDLE; break;
		case 'X': O.pub_http = true; break;
		case 'B': O.pub_base = (unsigned)atoi(optarg); break;
		case 'M': O.msg_log = optarg; break;
		case 'I': O.idle_wait = atof(optarg); break;
		case 't': O.timeout = atof(optarg); break;
		case 'T': O.connect_timeout = atof(optarg); break;
		case 'C': O.connect_rate = (unsigned)atoi(optarg); break;
		case 'k': O.max_pending = (unsigned)atoi(optarg); break;
		case 'a': O.src_addrs = (unsigned)atoi(optarg); break;
		case 'S':
			if (O.npids == MAX_PIDS)
				return -1;
			O.pids[O.npids++] = atoi(optarg);
			break;
		case 'h': usage(stdout); exit(0);
		default: return -1;
		}
	}
	if (optind != argc || O.port <= 0 || O.port > 65535 || O.n == 0 ||
	    O.pubs == 0 || O.pubs > MAX_PUBS || O.size < HDR_LEN ||
	    O.pub_base + O.pubs > 0xffffu ||
	    O.size > MAX_FRAME || O.rate <= 0 || O.src_addrs == 0 ||
	    O.src_addrs > 254 || O.max_pending == 0 ||
	    O.connect_rate == 0 || (O.mode == M_CLOSED && O.window == 0))
		return -1;
	if (!have_count)
		O.count = O.mode == M_OPEN ?
			  (uint64_t)(O.rate * O.duration + 0.5) : 1000;
	if (O.count == 0)
		return -1;
	if (!O.path) {
		snprintf(path, sizeof(path), "/ws?room=%s", O.room);
		O.path = path;
	}
	if (!O.pub_path) {
		snprintf(ppath, sizeof(ppath), "%s", O.path);
		O.pub_path = ppath;
	}
	return 0;
}

/* ---- setup ----------------------------------------------------------- */

static int raise_nofile(unsigned need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need + 16) {
		fprintf(stderr, "cfbench: RLIMIT_NOFILE %llu too low for "
			"%u connections\n", (unsigned long long)rl.rlim_cur,
			need);
		return -1;
	}
	return 0;
}

static int setup(void)
{
	unsigned total = O.pubs + O.n, i;
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = TIMER_ID };

	if (raise_nofile(total) < 0)
		return -1;
	if (getrandom(&rng_state, sizeof(rng_state), 0) < 0 || !rng_state)
		rng_state = 0x9e3779b97f4a7c15ull ^ now_ns();
	dst.sin_family = AF_INET;
	dst.sin_port = htons((uint16_t)O.port);
	if (inet_pton(AF_INET, O.host, &dst.sin_addr) != 1) {
		fprintf(stderr, "cfbench: bad --host %s\n", O.host);
		return -1;
	}
	conns = calloc(total, sizeof(*conns));
	tracks = calloc((size_t)O.n * O.pubs, sizeof(*tracks));
	pq = calloc(O.pubs, sizeof(*pq));
	dcount = calloc(O.pubs, sizeof(*dcount));
	per_pub = (O.count + O.pubs - 1) / O.pubs;
	if (!conns || !tracks || !pq || !dcount)
		return -1;
	for (i = 0; i < O.pubs; i++)
		if (!(dcount[i] = calloc(per_pub, sizeof(uint32_t))))
			return -1;
	if (O.msg_log && O.mode != M_IDLE) {
		size_t m = (size_t)per_pub * O.pubs;

		m_stamp = calloc(m, sizeof(uint64_t));
		m_queued = calloc(m, sizeof(uint64_t));
		m_first = calloc(m, sizeof(uint64_t));
		m_last = calloc(m, sizeof(uint64_t));
		if (!m_stamp || !m_queued || !m_first || !m_last)
			return -1;
	}
	for (i = 0; i < total; i++) {
		conns[i].fd = -1;
		conns[i].idx = i;
		conns[i].is_pub = i < O.pubs;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (epfd < 0 || tfd < 0 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &e) < 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	return 0;
}

static void teardown(void)
{
	unsigned i;

	for (i = 0; i < O.pubs + O.n; i++)
		if (conns[i].state != C_CLOSED && conns[i].fd >= 0)
			close(conns[i].fd);
	for (i = 0; i < O.n + O.pubs; i++)
		free(conns[i].carry);
	for (i = 0; i < O.pubs; i++) {
		free(pq[i].buf);
		free(dcount[i]);
	}
	free(conns);
	free(tracks);
	free(pq);
	free(dcount);
	free(m_stamp);
	free(m_queued);
	free(m_first);
	free(m_last);
	close(tfd);
	close(epfd);
}

static void idle_wait(void)
{
	uint64_t end = now_ns() + (uint64_t)(O.idle_wait * 1e9);

	while (now_ns() < end && !stop_flag && !S.errors)
		poll_once(50);
}

int main(int argc, char **argv)
{
	double cpu0, cpu1;
	long rss0 = -1;
	int rc;

	if (parse_opts(argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	if (O.mode == M_IDLE)
		O.pubs = 1; /* allocated but never connected */
	if (setup() < 0) {
		fprintf(stderr, "cfbench: setup failed\n");
		return 1;
	}
	if (O.mode == M_IDLE) {
		rss0 = proc_rss_kib();
		rc = connect_all(O.pubs, O.pubs + O.n);
		if (rc == 0)
			idle_wait();
		report_idle(rss0, proc_rss_kib());
	} else {
		rc = connect_all(0, O.n + O.pubs);
		cpu0 = proc_cpu_s();
		gen_cpu0 = self_cpu_s();
		if (rc == 0)
			run_load();
		cpu1 = proc_cpu_s();
		report_load(cpu0, cpu1);
		if (m_queued && write_msg_log() < 0)
			rc = -1;
	}
	teardown();
	return rc == 0 && S.errors == 0 ? 0 : 1;
}
