"""Abuse limits of chatfanoutd, with the real daemon over real sockets.

- per-address connection limit and connection rate: HTTP 429 with
  Retry-After before any upgrade, per source address (the test uses
  several loopback addresses, 127.0.0.x, with --limit-loopback), counts
  released when connections end, loopback exempt by default;
- --max-rooms: an upgrade into a new room past it gets 503;
- per-connection frame rate (token bucket): close 1008 "rate limit";
- a ping flood from a client that never reads: closed, daemon RSS
  bounded, bystanders unaffected (with the rate limit and without it);
- frame read timeout: a partial frame, or a fragmented message, then
  silence: close 1008 "frame timeout"; a quiet client between messages
  is left alone;
- the outbound budget: slow readers are shed (1008 "slow consumer")
  while a fast reader gets every message in order.

Usage: test_limits.py CHATFANOUTD
"""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cfd  # noqa: E402

chk = cfd.Checks()


def connect_from(addr, src, path='/ws?room=lobby', rcvbuf=None,
                 timeout=5.0):
    """Upgrades from source address src. Returns (RawWS, None) or
    (None, Response) when the server answered something else."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(addr)
    req, key = cfd.upgrade_request(addr, path)
    s.sendall(req)
    data = b''
    deadline = time.monotonic() + timeout
    while b'\r\n\r\n' not in data and time.monotonic() < deadline:
        try:
            chunk = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    resp, rest = cfd.parse_head(data)
    if resp.status != 101:
        s.close()
        return None, resp
    if resp.header('sec-websocket-accept') != cfd.ws_accept(key):
        raise RuntimeError('bad accept key')
    return cfd.RawWS(s, rest), resp


def get_from(addr, src, path='/healthz', timeout=5.0):
    """GET path from source address src; returns the Response."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(addr)
    s.sendall(('GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
               % path).encode())
    data, _ = cfd.read_until_eof(s, timeout)
    s.close()
    resp, rest = cfd.parse_head(data)
    resp.body = rest
    return resp


def metrics_from(d, src):
    r = get_from(d.addr, src, '/metrics')
    if r.status != 200:
        raise RuntimeError('/metrics answered %d' % r.status)
    return cfd.parse_metrics(r.body.decode())


def recv_text(c, text, timeout=5.0):
    """True once c receives text (earlier messages are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            op, p = c.recv_message(left)
        except (socket.timeout, cfd.Closed, OSError):
            return False
        if op == cfd.OP_TEXT and p == text.encode():
            return True
        if op == cfd.OP_CLOSE:
            return False


def roundtrip(a, b, text):
    """a sends text; both a and b (same room) receive it."""
    a.send_text(text)
    return recv_text(a, text) and recv_text(b, text)


def retry_after(resp):
    v = resp.header('retry-after')
    return int(v) if v and v.isdigit() else None


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


# --- per address ------------------------------------------------------------

def per_address_connections():
    with cfd.Daemon('--limit-loopback', '--max-connections-per-ip', '3',
                    '--connection-rate', '0') as d:
        held = []
        for i in range(3):
            ws, resp = connect_from(d.addr, '127.0.0.2')
            chk.ok(ws is not None, 'conn limit: upgrade %d of 3 from one '
                   'address' % (i + 1), resp and resp.status)
            held.append(ws)
        ws, resp = connect_from(d.addr, '127.0.0.2')
        chk.ok(ws is None and resp.status == 429,
               'conn limit: the 4th upgrade from that address gets 429',
               resp and resp.status)
        if ws is None:
            chk.ok((retry_after(resp) or 0) >= 1,
                   'conn limit: the 429 carries Retry-After',
                   resp.header('retry-after'))
            chk.eq(resp.header('connection'), 'close',
                   'conn limit: the 429 carries Connection: close')
        r = get_from(d.addr, '127.0.0.2')
        chk.eq(r.status, 429, 'conn limit: plain HTTP from that address '
               'is refused too')
        other, resp = connect_from(d.addr, '127.0.0.3')
        chk.ok(other is not None, 'conn limit: another address is not '
               'affected', resp and resp.status)
        chk.ok(roundtrip(held[0], held[1], 'still here'),
               'conn limit: the admitted clients chat on')
        # A WebSocket connection that ends gives its slot back.
        held[2].send_close(1000)
        held[2].expect_close(5.0)
        held[2].wait_eof(5.0)
        held[2].close()
        again = cfd.wait_for(lambda: connect_from(d.addr, '127.0.0.2')[0],
                             5.0, 0.1)
        chk.ok(again, 'conn limit: a closed WebSocket frees its slot')
        # So does a connection still in the HTTP phase.
        raw = []
        for _ in range(3):
            s = socket.socket()
            s.bind(('127.0.0.4', 0))
            s.connect(d.addr)
            raw.append(s)
        r = get_from(d.addr, '127.0.0.4')
        chk.eq(r.status, 429, 'conn limit: three silent connections hold '
               'the address\'s slots')
        for s in raw:
            s.close()
        ok = cfd.wait_for(
            lambda: get_from(d.addr, '127.0.0.4').status == 200, 5.0, 0.1)
        chk.ok(ok, 'conn limit: closed HTTP connections free their slots')
        m = metrics_from(d, '127.0.0.9')
        chk.ok(m.value('chatfanout_limits_rejected_total',
                       reason='ip_connections') >= 3,
               'conn limit: limits_rejected_total{reason="ip_connections"}',
               m.series('chatfanout_limits_rejected_total'))
        refused = (m.value('chatfanout_limits_rejected_total',
                           reason='ip_connections') +
                   m.value('chatfanout_limits_rejected_total',
                           reason='ip_rate'))
        chk.eq(m.value('chatfanout_http_requests_total', code='429'),
               refused, 'conn limit: every refusal got its 429 (no flood): '
               'http_requests_total{code="429"} == limits_rejected_total')
        for c in held[:2] + [other, again]:
            if c:
                c.close()

    # Without --limit-loopback loopback peers are not limited.
    with cfd.Daemon('--max-connections-per-ip', '1') as d:
        a, _ = connect_from(d.addr, '127.0.0.2')
        b, resp = connect_from(d.addr, '127.0.0.2')
        chk.ok(a is not None and b is not None,
               'loopback is exempt by default', resp and resp.status)
        for c in (a, b):
            if c:
                c.close()


def per_address_rate():
    with cfd.Daemon('--limit-loopback', '--max-connections-per-ip', '0',
                    '--connection-rate', '2', '--connection-burst',
                    '5') as d:
        codes = [get_from(d.addr, '127.0.0.5').status for _ in range(5)]
        chk.eq(codes, [200] * 5, 'conn rate: a burst of 5 is admitted')
        r = get_from(d.addr, '127.0.0.5')
        chk.eq(r.status, 429, 'conn rate: the 6th at once gets 429')
        chk.eq(retry_after(r), 1, 'conn rate: Retry-After: 1')
        chk.eq(get_from(d.addr, '127.0.0.6').status, 200,
               'conn rate: another address is not affected')
        time.sleep(0.7)  # 2 a second: one token back
        chk.eq(get_from(d.addr, '127.0.0.5').status, 200,
               'conn rate: admitted again once a token is back')
        m = metrics_from(d, '127.0.0.9')
        chk.ok(m.value('chatfanout_limits_rejected_total',
                       reason='ip_rate') >= 1,
               'conn rate: limits_rejected_total{reason="ip_rate"}')


def max_rooms():
    with cfd.Daemon('--max-rooms', '2', '--history', '0') as d:
        a, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=a')
        b, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=b')
        c, resp = connect_from(d.addr, '127.0.0.1', '/ws?room=c')
        chk.ok(a and b and c is None and resp.status == 503,
               '--max-rooms 2: a third room gets 503',
               resp and resp.status)
        a2, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=a')
        chk.ok(a2 is not None, '--max-rooms: an existing room still admits')
        for x in (a, a2):
            x.send_close(1000)
            x.expect_close(5.0)
            x.close()
        c = cfd.wait_for(lambda: connect_from(d.addr, '127.0.0.1',
                                              '/ws?room=c')[0], 5.0, 0.1)
        chk.ok(c, '--max-rooms: a room left empty makes room')
        for x in (b, c):
            if x:
                x.close()


# --- per connection -------------------------------------------------------

def message_rate():
    with cfd.Daemon('--message-rate', '10', '--message-burst', '20') as d:
        x, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=r')
        y, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=r')
        z, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=r')
        # Within the burst: fine.
        for i in range(15):
            x.send_text('ok %d' % i)
        got = [y.recv_message(5.0) for _ in range(15)]
        chk.ok(all(op == cfd.OP_TEXT for op, _ in got),
               'msg rate: 15 messages within the burst are delivered')
        time.sleep(1.6)  # 16 tokens back (20 at most)
        for i in range(100):
            try:
                x.send_text('flood %d' % i)
            except OSError:
                break
        code, reason, how = x.expect_close(5.0)
        chk.ok(how == 'close' and code == 1008 and reason == 'rate limit',
               'msg rate: a flood is closed with 1008 "rate limit"',
               (code, reason, how))
        n = 0
        while True:
            try:
                op, p = y.recv_message(0.5)
            except Exception:
                break
            if op != cfd.OP_TEXT or not p.startswith(b'flood'):
                break
            n += 1
        chk.ok(15 <= n <= 21, 'msg rate: bystanders got the flood up to '
               'the bucket, no more', n)
        chk.ok(roundtrip(y, z, 'after the flood'),
               'msg rate: bystanders chat on')
        m = metrics_from(d, '127.0.0.1')
        chk.eq(m.value('chatfanout_ws_rate_limited_total'), 1,
               'msg rate: ws_rate_limited_total')
        chk.ok(m.value('chatfanout_ws_closes_total', code='1008') >= 1,
               'msg rate: ws_closes_total{code="1008"}')
        for c in (x, y, z):
            c.close()


def ping_flood(extra, name, n=100000):
    """n pings from a client that never reads, as fast as they go."""
    # Under ASan freed memory waits in a quarantine and counts in RSS:
    # keep it small so RSS shows what the daemon holds.
    asan = os.environ.get('ASAN_OPTIONS', '')
    env = {'ASAN_OPTIONS': (asan + ':' if asan else '') +
           'quarantine_size_mb=1'}
    with cfd.Daemon(*extra, env=env) as d:
        a, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=p')
        b, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=p')
        f, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=p', rcvbuf=4096)
        rss0 = rss_kib(d.proc.pid)
        # 125 bytes, the most a ping may carry: without the rate limit
        # the pongs (12.7 MB) outgrow the kernel's socket buffers.
        ping = cfd.encode_frame(cfd.OP_PING, b'p' * 125,
                                mask_key=b'\x01\x02\x03\x04')
        f.sock.setblocking(False)
        data = ping * 1000
        sent, peak, deadline = 0, rss0, time.monotonic() + 30
        pos = 0
        while sent < n and time.monotonic() < deadline:
            try:
                k = f.sock.send(data[pos:])
            except BlockingIOError:
                time.sleep(0.005)
                peak = max(peak, rss_kib(d.proc.pid))
                continue
            except OSError:
                break
            pos += k
            while pos >= len(ping):
                pos -= len(ping)
                sent += 1
            if pos == 0 or pos >= len(data):
                pos = 0
        peak = max(peak, rss_kib(d.proc.pid))
        cfd.log('%s: %d pings written, rss %d -> peak %d KiB'
                % (name, sent, rss0, peak))
        if cfd.wrapped():
            # valgrind's own bookkeeping (its queue of freed blocks
            # alone is 20 MB) is in the RSS: nothing to compare.
            cfd.log('%s: RSS not checked under %s' % (name, cfd.WRAPPER[0]))
        else:
            chk.ok(peak - rss0 < 32 * 1024, '%s: daemon RSS stays bounded '
                   '(< 32 MiB growth)' % name, (rss0, peak))
        # Now read: pongs, then the close (or the connection is cut).
        f.sock.setblocking(True)
        code, reason, how = f.expect_close(15.0)
        chk.ok(how in ('close', 'eof', 'reset'),
               '%s: the flooder is closed' % name, (code, reason, how))
        if extra == ():
            chk.ok(how == 'close' and code == 1008 and
                   reason == 'rate limit',
                   '%s: close 1008 "rate limit"' % name,
                   (code, reason, how))
        f.close()
        chk.ok(roundtrip(a, b, 'bystander'), '%s: bystanders chat on'
               % name)
        gone = cfd.wait_for(lambda: metrics_from(d, '127.0.0.1').value(
            'chatfanout_connections') == 2, 10.0, 0.2)
        chk.ok(gone, '%s: the flooder is gone' % name)
        for c in (a, b):
            c.close()


def frame_timeout():
    with cfd.Daemon('--frame-timeout', '1', '--ping-interval', '0') as d:
        a, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=t')
        b, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=t')
        part, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=t')
        frag, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=t')
        quiet, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=t')
        whole = cfd.encode_frame(cfd.OP_TEXT, b'x' * 100)
        t0 = time.monotonic()
        part.send_raw(whole[:30])  # header, key and some payload
        frag.send_frame(cfd.OP_TEXT, b'first half', fin=False)
        code, reason, how = part.expect_close(6.0)
        dt = time.monotonic() - t0
        chk.ok(how == 'close' and code == 1008 and reason == 'frame timeout',
               'frame timeout: a partial frame then silence: 1008 "frame '
               'timeout"', (code, reason, how))
        chk.ok(0.8 <= dt <= 4.0, 'frame timeout: after about 1s', dt)
        code, reason, how = frag.expect_close(6.0)
        chk.ok(how == 'close' and code == 1008 and reason == 'frame timeout',
               'frame timeout: a fragmented message then silence too',
               (code, reason, how))
        # Slowloris: the rest trickles in, a byte every 0.3 s. The
        # timeout counts from the frame's first byte, not the last.
        trickle, _ = connect_from(d.addr, '127.0.0.1', '/ws?room=t')
        t0 = time.monotonic()
        trickle.send_raw(whole[:10])
        for k in range(10, len(whole)):
            time.sleep(0.3)
            try:
                trickle.send_raw(whole[k:k + 1])
            except OSError:
                break
            if time.monotonic() - t0 > 6.0:
                break
        code, reason, how = trickle.expect_close(6.0)
        dt = time.monotonic() - t0
        chk.ok(how == 'close' and code == 1008 and reason == 'frame timeout'
               and dt <= 4.0, 'frame timeout: a frame trickled in a byte at '
               'a time is closed about 1s after it began', (code, how, dt))
        # A client idle between messages is not affected.
        quiet.send_text('hello')
        time.sleep(2.0)
        chk.ok(roundtrip(quiet, a, 'still open'),
               'frame timeout: a quiet client between messages stays')
        chk.ok(roundtrip(a, b, 'bystander'), 'frame timeout: bystanders '
               'chat on')
        m = metrics_from(d, '127.0.0.1')
        chk.eq(m.value('chatfanout_ws_frame_timeouts_total'), 3,
               'frame timeout: ws_frame_timeouts_total')
        for c in (a, b, part, frag, quiet, trickle):
            c.close()


# --- outbound budget --------------------------------------------------------

def outbound_budget():
    """Four rooms, each with a sender that reads its own messages back and
    a reader that never reads. The readers hold different messages, so
    together they pass the budget (256 KiB) long before any of them
    fills its own buffer (256 KiB): the budget sheds them, largest first,
    while the senders get every message."""
    size = 8192
    with cfd.Daemon('--client-buffer', '256KiB', '--outbound-budget',
                    '256KiB', '--max-message-size', '16KiB',
                    '--history', '0', '--message-rate', '0') as d:
        rooms = ['/ws?room=b%d' % i for i in range(4)]
        fast = [connect_from(d.addr, '127.0.0.1', r)[0] for r in rooms]
        slow = [connect_from(d.addr, '127.0.0.1', r, rcvbuf=4096)[0]
                for r in rooms]
        sent, got, ok_order = [0] * 4, [0] * 4, True
        shed = gone = 0
        while sum(sent) < 4000:
            for i, f in enumerate(fast):
                for _ in range(2):
                    f.send_binary(struct.pack('!I', sent[i]) +
                                  b'b' * (size - 4))
                    sent[i] += 1
            for i, f in enumerate(fast):
                for _ in range(2):
                    op, p = f.recv_message(10.0)
                    ok_order = ok_order and op == cfd.OP_BINARY and \
                        struct.unpack('!I', p[:4])[0] == got[i]
                    got[i] += 1
            if sum(sent) % 64 == 0:
                m = metrics_from(d, '127.0.0.1')
                shed = m.value('chatfanout_outbound_budget_closes_total')
                gone = m.value('chatfanout_slow_client_disconnects_total')
                if gone >= 4:
                    break
        cfd.log('budget: %d messages of %d bytes sent, %d readers shed by '
                'the budget, %d slow in all' % (sum(sent), size, shed, gone))
        chk.ok(shed >= 3, 'budget: the slow readers were shed by the '
               'budget (the last may meet its own buffer limit first)',
               shed)
        chk.eq(gone, 4, 'budget: every slow reader was closed')
        chk.ok(ok_order and got == sent,
               'budget: the senders got every message in order',
               (got, sent))
        m = metrics_from(d, '127.0.0.1')
        chk.ok(m.value('chatfanout_outbound_bytes') <= 256 * 1024,
               'budget: outbound_bytes under the budget',
               m.value('chatfanout_outbound_bytes'))
        for s in slow:
            code, reason, how = s.expect_close(10.0)
            chk.ok(how in ('eof', 'reset') or
                   (code == 1008 and reason == 'slow consumer'),
                   'budget: a shed reader gets 1008 "slow consumer"',
                   (code, reason, how))
            s.close()
        for i, f in enumerate(fast):
            f.send_binary(b'after')
            op, p = f.recv_message(5.0)
            chk.eq(p, b'after', 'budget: sender %d chats on' % i)
            f.close()


def main():
    cfd.daemon_path()
    for step in (per_address_connections, per_address_rate, max_rooms,
                 message_rate, frame_timeout, outbound_budget):
        cfd.log('# %s' % step.__name__)
        step()
    cfd.log('# ping_flood')
    ping_flood((), 'ping flood')
    ping_flood(('--message-rate', '0'), 'ping flood, no rate limit')
    return chk.result()


if __name__ == '__main__':
    cfd.run(main, timeout=170)
