#!/usr/bin/python3
"""Baseline for bench row 3: relay a file through Prosody's proxy65 with raw
sockets, no XMPP file-transfer logic at all.

  /usr/bin/python3 bench/proxy_relay.py --jid dave@localhost --password PW \
      --server 127.0.0.1:5222 --cafile ca.pem --proxy 127.0.0.1:PORT \
      --proxy-jid proxy.localhost --file SRC --out DST [--timeout S]

Logs in with slixmpp as the initiator (to be allowed to send <activate/>),
opens two SOCKS5 connections to the proxy with the same DST.ADDR
(SHA1(SID + initiator full JID + target JID)); the first is the target's, the
second the initiator's (Prosody pairs them in that order), sends the
<activate/> iq, then hands the two sockets to `socat -b 1048576 -u` (file ->
initiator socket, target socket -> file). Prints one JSON line: {ok, bytes,
seconds (from activation until the receiving socat has written the last
byte), error}. Binds and connects to 127.0.0.1 only.
"""

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

NS_S5B = 'http://jabber.org/protocol/bytestreams'


def socks5(host, port, dst, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(b'\x05\x01\x00')
    r = _recvn(s, 2)
    if r != b'\x05\x00':
        raise ConnectionError('SOCKS5 method refused: %r' % r)
    d = dst.encode()
    s.sendall(b'\x05\x01\x00\x03' + bytes([len(d)]) + d + b'\x00\x00')
    r = _recvn(s, 5)
    if r[1] != 0:
        raise ConnectionError('SOCKS5 CONNECT failed: %r' % r)
    _recvn(s, r[4] + 2)
    s.settimeout(None)
    return s


def _recvn(s, n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise ConnectionError('EOF during SOCKS5 handshake')
        b += c
    return b


class C(slixmpp.ClientXMPP):
    def __init__(self, a):
        super().__init__('%s/bench-relay' % a.jid, a.password)
        self.ca_certs = a.cafile
        self.ready = asyncio.Event()
        self.failed = None
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('failed_auth', self._fail)
        self.add_event_handler('connection_failed', self._fail)

    async def _start(self, _):
        self.ready.set()

    def _fail(self, ev):
        self.failed = str(ev)
        self.ready.set()


async def main(a):
    res = {'ok': False, 'bytes': 0, 'seconds': None, 'error': None}
    host, _, port = a.server.rpartition(':')
    phost, _, pport = a.proxy.rpartition(':')
    c = C(a)
    c.connect(address=(host, int(port)))
    procs = []
    try:
        await asyncio.wait_for(c.ready.wait(), 15)
        if c.failed:
            raise RuntimeError('login failed: %s' % c.failed)
        me = str(c.boundjid)
        target = 'relay-target@localhost/bench'
        sid = 'r' + uuid.uuid4().hex
        dst = hashlib.sha1((sid + me + target).encode()).hexdigest()
        ts = socks5(phost, int(pport), dst, 10)      # first: the target's
        ins = socks5(phost, int(pport), dst, 10)     # second: the initiator's
        for s in (ts, ins):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        iq = c.make_iq_set(ito=a.proxy_jid)
        qe = ET.Element('{%s}query' % NS_S5B, {'sid': sid})
        ET.SubElement(qe, '{%s}activate' % NS_S5B).text = target
        iq.append(qe)
        await iq.send(timeout=10)
        t0 = time.monotonic()
        rx = subprocess.Popen(['socat', '-b', '1048576', '-u',
                               'FD:%d' % ts.fileno(), 'CREATE:%s' % a.out],
                              pass_fds=(ts.fileno(),),
                              stdin=subprocess.DEVNULL)
        procs.append(rx)
        tx = subprocess.Popen(['socat', '-b', '1048576', '-u',
                               'OPEN:%s' % a.file, 'FD:%d' % ins.fileno()],
                              pass_fds=(ins.fileno(),),
                              stdin=subprocess.DEVNULL)
        procs.append(tx)
        ts.close()
        ins.close()
        deadline = t0 + a.timeout
        while rx.poll() is None or tx.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError('relay not done after %ss' % a.timeout)
            await asyncio.sleep(0.002)
        res['seconds'] = round(time.monotonic() - t0, 4)
        res['bytes'] = os.path.getsize(a.out)
        want = os.path.getsize(a.file)
        if rx.returncode or tx.returncode:
            res['error'] = 'socat exit codes %s/%s' % (tx.returncode,
                                                        rx.returncode)
        elif res['bytes'] != want:
            res['error'] = 'received %d of %d bytes' % (res['bytes'], want)
        else:
            res['ok'] = True
    except (IqError, IqTimeout) as e:
        res['error'] = 'activate failed: %r' % e
    except Exception as e:
        res['error'] = '%s: %s' % (type(e).__name__, e)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        try:
            c.disconnect(wait=0.5)
        except Exception:
            pass
    print(json.dumps(res), flush=True)
    return 0 if res['ok'] else 1


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--jid', required=True)
    ap.add_argument('--password', required=True)
    ap.add_argument('--server', required=True)
    ap.add_argument('--cafile', required=True)
    ap.add_argument('--proxy', required=True)
    ap.add_argument('--proxy-jid', default='proxy.localhost')
    ap.add_argument('--file', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--timeout', type=float, default=120)
    a = ap.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sys.exit(loop.run_until_complete(main(a)))
