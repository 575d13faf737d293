#!/usr/bin/python3
"""slixpeer: a command-line XEP-0096 SI file-transfer peer for tests.

Built on slixmpp 1.8.3 (Debian 12). slixmpp's own XEP-0095/0096 plugin is
not used (it drops incoming offers and raises TypeError on outgoing ones):
SI offers and answers are raw elements, SOCKS5 (XEP-0065, direct listener,
connecting to streamhosts, proxy65 with activate) is implemented here, IBB
(XEP-0047) uses slixmpp's xep_0047 plugin for <open/>/<close/> and for
receiving; data blocks are sent as raw iqs (so they can be broken on
purpose). Everything stays on 127.0.0.1.

Run with Debian's interpreter: /usr/bin/python3 tests/peer/slixpeer.py ...

Common options (before the mode):
  --jid JID          bare or full; a bare JID gets resource "slixpeer"
  --password PW      or --password-file F
  --server H:P       c2s address (default 127.0.0.1:5222)
  --cafile CA        PEM to trust for the server certificate
  --priority N       presence priority (default 0)
  -v / --verbose     slixmpp debug log on stderr

receive --dir D [--count N] [--timeout S] [--accept yes|no]
        [--methods s5b,ibb] [--s5b-timeout S] [--fallback-wait S]
        [--s5b-wrong-hash]
  Answers disco#info with si, si/profile/file-transfer, bytestreams, ibb.
  Accepts offers from anyone (--accept no: answers 403 "Offer Declined"),
  picks bytestreams when offered and allowed by --methods, else ibb, else
  answers 400 <no-valid-streams/>. For bytestreams it connects to the
  offered streamhosts in order (direct or proxy; --s5b-timeout each,
  default 5 s) and, if none works, answers item-not-found and waits
  --fallback-wait s (default 30) for an IBB <open/> on the same SID, as
  libpurple does. Writes each file into D (the offered name, sanitised to a
  basename; " (2)" etc. on collision; data goes to D/.part-SID first).
  Verifies size and the md5 hash if offered. Prints one JSON line per
  offer: {name, size, md5, method, ok, error, path, from, sid, offset}.
  Exits after N offers (default 1), or after --timeout s (default 60) with
  exit code 2. Exit code 1 if any transfer failed, else 0.
  --ready-file F: write our full JID to F once logged in (for scripts).
  --idle-timeout S: fail a transfer whose stream is silent for S s (30).
  --s5b-wrong-hash: hostile target: connect to every streamhost with a wrong
  DST.ADDR (SHA1 of a different SID), to test the initiator's listener and
  the proxy's pairing.

send --to JID --file F [--method auto|s5b-direct|s5b-proxy|ibb]
     [--hash yes|no] [--timeout S] [--range] [--no-disco] [--desc TEXT]
     [hostile options below]
  Waits for the target's presence (a full JID in --to skips this: useful
  for contacts that do not share presence), disco#info of its full JID
  (must list SI and the file-transfer profile unless --no-disco), offers
  the file (name, size, md5 hash unless --hash no, date; <range/> with
  --range, honouring an offset/length in the answer) and streams it:
    s5b-direct  offer only our own SOCKS5 listener on 127.0.0.1
    s5b-proxy   disco the server's proxy65 and offer only it; connect and
                activate after <streamhost-used/>
    ibb         offer only ibb; <open/> with block-size 4096, one data iq
                at a time, each acknowledged; then <close/> (its reply
                gets a short grace only)
    auto        offer bytestreams and ibb; streamhosts: listener then proxy
  A 0-byte file: S5B connects and closes without data; IBB opens, closes.
  Prints one JSON line {ok, method, error, sid, size, md5, to, offset,
  seconds}; exit code 0 on success, 1 on failure.

  Hostile options (to drive the receiver's error paths):
    --lie-size N      announce size N but send the real content
    --bad-hash        announce a wrong md5 hash
    --name NAME       offer this name string verbatim (e.g. "../../x")
    --ibb-bad-base64  make the second IBB data block (the first, if only one
                      block) invalid base64
    --ibb-skip-seq    skip seq 1 (send 0, 2, 3, ...); with one block, send
                      it as seq 1
    --s5b-wrong-hash  s5b-proxy: connect to the proxy with a wrong DST.ADDR
                      (activation should then fail); s5b-direct: accept the
                      target's CONNECT but answer with a wrong DST.ADDR in the
                      SOCKS5 reply
    --close-early N   stop after sending N bytes and close the bytestream
    --no-close        IBB: never send <close/>; S5B: keep the socket open
                      until --timeout
    --s5b-dead        offer only a streamhost on which nobody listens
    --fallback-ibb    when the target answers the streamhost list with an
                      error, open IBB on the same SID (as libpurple does);
                      the result then has method "ibb" and "s5b_error"

    --ibb-foreign-sid after the first block, send a <data/> and an <open/>
                      for SIDs never offered, and after <close/> one more
                      <data/> on the closed SID; the replies (condition or
                      "result") go to foreign_data, foreign_open, closed_data
    --flood N         send N offers at once (distinct SIDs) and stream none;
                      prints {flood, accepted, declined, errors} at once
                      (phase "flooded"), then --flood-hold S seconds with
                      the connection (and the accepted offers) kept open
    A --name with TAB/LF/CR is sent with character references (&#9; ...)
    so the characters survive XML attribute normalisation.

  Receive-side hostile/test options: --s5b-wrong-hash (above); --s5b-fail
  (try no streamhost, answer item-not-found at once, then wait for IBB on
  the same SID).
"""

import argparse
import asyncio
import base64
import datetime
import hashlib
import json
import logging
import os
import socket
import sys
import time
import uuid
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout, XMPPError
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import MatchXPath

NS_SI = 'http://jabber.org/protocol/si'
NS_FT = 'http://jabber.org/protocol/si/profile/file-transfer'
NS_FNEG = 'http://jabber.org/protocol/feature-neg'
NS_XDATA = 'jabber:x:data'
NS_S5B = 'http://jabber.org/protocol/bytestreams'
NS_IBB = 'http://jabber.org/protocol/ibb'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_CLIENT = 'jabber:client'

log = logging.getLogger('slixpeer')


def q(ns, tag):
    return '{%s}%s' % (ns, tag)


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + '\n')
    sys.stdout.flush()


def s5b_hash(sid, requester, target):
    return hashlib.sha1(('%s%s%s' % (sid, requester, target))
                        .encode('utf-8')).hexdigest()


def error_condition(exc):
    """'cancel/item-not-found: text' from an IqError/IqTimeout."""
    if isinstance(exc, IqTimeout):
        return 'timeout'
    if isinstance(exc, IqError):
        e = exc.iq['error']
        s = '%s/%s' % (e['type'], e['condition'])
        if e['text']:
            s += ': ' + e['text']
        return s
    return '%s: %s' % (type(exc).__name__, exc)


def error_reply(iq, etype, condition, text=None, code=None, extra=None):
    r = iq.reply(clear=True)
    r['type'] = 'error'
    err = ET.Element(q(NS_CLIENT, 'error'), {'type': etype})
    if code:
        err.set('code', str(code))
    ET.SubElement(err, q(NS_STANZAS, condition))
    if text:
        t = ET.SubElement(err, q(NS_STANZAS, 'text'))
        t.text = text
    if extra is not None:
        err.append(extra)
    r.append(err)
    r.send()


def safe_name(name):
    n = (name or '').replace('\\', '/').split('/')[-1]
    n = ''.join(c for c in n if c >= ' ' and c != '\x7f')
    if n in ('', '.', '..') or set(n) <= {'.'}:
        n = 'unnamed'
    b = n.encode('utf-8')
    if len(b) > 200:
        n = b[:200].decode('utf-8', 'ignore')
    return n


def unique_path(d, name):
    p = os.path.join(d, name)
    i = 2
    root, ext = os.path.splitext(name)
    while os.path.exists(p):
        p = os.path.join(d, '%s (%d)%s' % (root, i, ext))
        i += 1
    return p


# ------------------------------------------------------------- SOCKS5

async def socks5_connect(host, port, dstaddr, timeout):
    """Connect as a SOCKS5 client (no auth, CONNECT to DOMAINNAME dstaddr:0).
    Never pipelines: waits for the method choice before CONNECT."""
    r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)),
                                  timeout)
    try:
        w.write(b'\x05\x01\x00')
        await w.drain()
        resp = await asyncio.wait_for(r.readexactly(2), timeout)
        if resp != b'\x05\x00':
            raise ConnectionError('SOCKS5 method refused: %r' % resp)
        d = dstaddr.encode()
        w.write(b'\x05\x01\x00\x03' + bytes([len(d)]) + d + b'\x00\x00')
        await w.drain()
        hdr = await asyncio.wait_for(r.readexactly(4), timeout)
        if hdr[0] != 5 or hdr[1] != 0:
            raise ConnectionError('SOCKS5 CONNECT failed: reply %d' % hdr[1])
        if hdr[3] == 3:
            n = (await asyncio.wait_for(r.readexactly(1), timeout))[0]
            await asyncio.wait_for(r.readexactly(n + 2), timeout)
        elif hdr[3] == 1:
            await asyncio.wait_for(r.readexactly(6), timeout)
        elif hdr[3] == 4:
            await asyncio.wait_for(r.readexactly(18), timeout)
        else:
            raise ConnectionError('SOCKS5 bad ATYP %d' % hdr[3])
    except BaseException:
        w.close()
        raise
    return r, w


class S5BListener:
    """Our direct streamhost: a SOCKS5 server on 127.0.0.1 that accepts a
    CONNECT only for hashes registered with expect()."""

    def __init__(self, wrong_reply=False):
        self.server = None
        self.port = None
        self.waiters = {}          # dstaddr -> Future((reader, writer))
        self.wrong_reply = wrong_reply

    async def start(self):
        self.server = await asyncio.start_server(self._conn, '127.0.0.1', 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def expect(self, dstaddr):
        f = asyncio.get_event_loop().create_future()
        self.waiters[dstaddr] = f
        return f

    async def _conn(self, r, w):
        try:
            ver, n = await asyncio.wait_for(r.readexactly(2), 10)
            methods = await asyncio.wait_for(r.readexactly(n), 10)
            if ver != 5 or 0 not in methods:
                w.write(b'\x05\xff')
                await w.drain()
                w.close()
                return
            w.write(b'\x05\x00')
            await w.drain()
            hdr = await asyncio.wait_for(r.readexactly(5), 10)
            if hdr[:4] != b'\x05\x01\x00\x03':
                w.write(b'\x05\x07\x00\x01\0\0\0\0\0\0')
                w.close()
                return
            addr = (await asyncio.wait_for(r.readexactly(hdr[4]), 10)).decode(
                'ascii', 'replace')
            await asyncio.wait_for(r.readexactly(2), 10)
            f = self.waiters.get(addr)
            if f is None or f.done():
                log.info('S5B listener: CONNECT for unknown hash %s', addr)
                w.write(b'\x05\x02\x00\x03' + bytes([len(addr)])
                        + addr.encode() + b'\x00\x00')
                await w.drain()
                w.close()
                return
            rep = addr
            if self.wrong_reply:
                rep = hashlib.sha1(b'wrong' + addr.encode()).hexdigest()
            w.write(b'\x05\x00\x00\x03' + bytes([len(rep)]) + rep.encode()
                    + b'\x00\x00')
            await w.drain()
            f.set_result((r, w))
        except (asyncio.IncompleteReadError, asyncio.TimeoutError,
                ConnectionError) as e:
            log.info('S5B listener: connection failed: %r', e)
            w.close()

    def close(self):
        if self.server:
            self.server.close()


# ------------------------------------------------------------- client

class Peer(slixmpp.ClientXMPP):
    def __init__(self, args):
        jid = JID(args.jid)
        if not jid.resource:
            jid = JID('%s/slixpeer' % jid.bare)
        super().__init__(jid, args.password)
        self.args = args
        if args.cafile:
            self.ca_certs = args.cafile
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0047', {'block_size': 4096,
                                          'max_block_size': 65535})
        self.register_plugin('xep_0199')
        self.ready = asyncio.Event()
        self.fatal = None
        self.add_event_handler('session_start', self._session_start)
        self.add_event_handler('failed_auth', self._failed)
        self.add_event_handler('connection_failed', self._failed)

    async def _session_start(self, _):
        self.send_presence(ppriority=self.args.priority)
        try:
            await self.get_roster(timeout=10)
        except (IqError, IqTimeout):
            pass
        self.ready.set()

    def _failed(self, ev):
        self.fatal = 'connection/auth failed: %s' % (ev,)
        self.ready.set()

    def setup_features(self):
        d = self['xep_0030']
        for f in (NS_SI, NS_FT, NS_S5B, NS_IBB, NS_FNEG):
            d.add_feature(f)


# ------------------------------------------------------------- receive

class Transfer:
    def __init__(self, sid, peer, name, size, md5, method):
        self.sid = sid
        self.peer = peer
        self.name = name
        self.size = size
        self.md5 = md5
        self.method = method           # negotiated: 'bytestreams' or 'ibb'
        self.used = None               # s5b-direct | s5b-proxy | ibb
        self.state = 'accepted'        # accepted, s5b, s5b-failed, ibb, done
        self.h = hashlib.md5()
        self.got = 0
        self.fh = None
        self.part = None
        self.timer = None


class Receiver(Peer):
    def __init__(self, args):
        super().__init__(args)
        self.transfers = {}            # (peer full jid str, sid) -> Transfer
        self.finished = 0
        self.failed = 0
        self.done = asyncio.Event()
        self.methods = [m.strip() for m in args.methods.split(',') if m.strip()]
        self.register_handler(CoroutineCallback(
            'SI offer', MatchXPath('{%s}iq/{%s}si' % (NS_CLIENT, NS_SI)),
            self._on_si))
        self.register_handler(CoroutineCallback(
            'S5B streamhosts', MatchXPath('{%s}iq/{%s}query' % (NS_CLIENT,
                                                                 NS_S5B)),
            self._on_streamhosts))
        self['xep_0047']._accept_stream = self._ibb_accept
        self.add_event_handler('ibb_stream_start', self._ibb_start)
        self.add_event_handler('ibb_stream_data', self._ibb_data)
        self.add_event_handler('ibb_stream_end', self._ibb_end)
        self.setup_features()

    # -- offer
    async def _on_si(self, iq):
        if iq['type'] != 'set':
            return
        si = iq.xml.find(q(NS_SI, 'si'))
        sid = si.get('id')
        f = si.find(q(NS_FT, 'file'))
        peer = str(iq['from'])
        name = f.get('name') if f is not None else None
        try:
            size = int(f.get('size')) if f is not None and f.get('size') \
                is not None else None
        except ValueError:
            size = None
        md5 = f.get('hash') if f is not None else None
        res = {'name': name, 'size': size, 'md5': None, 'method': None,
               'ok': False, 'error': None, 'path': None, 'from': peer,
               'sid': sid, 'offered_hash': md5, 'offset': 0}
        if not sid or f is None or si.get('profile') != NS_FT:
            error_reply(iq, 'modify', 'bad-request', 'bad offer',
                        extra=ET.Element(q(NS_SI, 'bad-profile')))
            res['error'] = 'bad offer'
            return self._finish_result(res)
        if self.args.accept == 'no':
            error_reply(iq, 'cancel', 'forbidden', 'Offer Declined', code=403)
            res['error'] = 'declined'
            return self._finish_result(res)
        offered = [v.text for v in si.iter(q(NS_XDATA, 'value'))]
        choice = None
        for m in self.methods:
            ns = NS_S5B if m == 's5b' else NS_IBB if m == 'ibb' else None
            if ns in offered:
                choice = ns
                break
        if choice is None:
            error_reply(iq, 'cancel', 'bad-request',
                        'no acceptable stream method',
                        extra=ET.Element(q(NS_SI, 'no-valid-streams')))
            res['error'] = 'no-valid-streams (offered %s)' % offered
            return self._finish_result(res)
        t = Transfer(sid, peer, name, size, md5, choice)
        t.res = res
        self.transfers[(peer, sid)] = t
        r = iq.reply(clear=True)
        si_r = ET.Element(q(NS_SI, 'si'))
        feat = ET.SubElement(si_r, q(NS_FNEG, 'feature'))
        x = ET.SubElement(feat, q(NS_XDATA, 'x'), {'type': 'submit'})
        fld = ET.SubElement(x, q(NS_XDATA, 'field'), {'var': 'stream-method'})
        ET.SubElement(fld, q(NS_XDATA, 'value')).text = choice
        r.append(si_r)
        r.send()
        log.info('accepted %s from %s (%s)', name, peer, choice)

    def _open_part(self, t):
        t.part = os.path.join(self.args.dir, '.part-%s' %
                              hashlib.sha1(t.sid.encode()).hexdigest()[:16])
        t.fh = open(t.part, 'wb')

    def _write(self, t, data):
        if t.fh is None:
            self._open_part(t)
        t.fh.write(data)
        t.h.update(data)
        t.got += len(data)

    def _complete(self, t, error=None):
        if t.state == 'done':
            return
        t.state = 'done'
        if t.timer:
            t.timer.cancel()
        if t.fh is None and error is None:
            self._open_part(t)
        if t.fh is not None:
            t.fh.close()
        res = t.res
        res['method'] = t.used
        res['md5'] = t.h.hexdigest()
        res['received'] = t.got
        if error is None and t.size is not None and t.got != t.size:
            error = 'size mismatch: got %d, announced %d' % (t.got, t.size)
        if error is None and t.md5 and t.md5.lower() != res['md5']:
            error = 'hash mismatch: got %s, announced %s' % (res['md5'],
                                                              t.md5)
        if error is None:
            p = unique_path(self.args.dir, safe_name(t.name))
            os.rename(t.part, p)
            res['path'] = p
            res['ok'] = True
        else:
            res['error'] = error
            if t.part and os.path.exists(t.part):
                os.unlink(t.part)
        res['size'] = t.got if t.size is None else t.size
        self._finish_result(res)

    def _finish_result(self, res):
        emit(res)
        self.finished += 1
        if not res['ok']:
            self.failed += 1
        if self.finished >= self.args.count:
            self.done.set()

    # -- SOCKS5
    async def _on_streamhosts(self, iq):
        if iq['type'] != 'set':
            return
        query = iq.xml.find(q(NS_S5B, 'query'))
        sid = query.get('sid')
        peer = str(iq['from'])
        t = self.transfers.get((peer, sid))
        if t is None or t.method != NS_S5B or t.state != 'accepted':
            error_reply(iq, 'cancel', 'item-not-found', 'unknown sid')
            return
        if query.get('mode', 'tcp') != 'tcp':
            error_reply(iq, 'cancel', 'not-acceptable', 'udp not supported')
            return
        t.state = 's5b'
        hosts = [(sh.get('jid'), sh.get('host'), sh.get('port'))
                 for sh in query.findall(q(NS_S5B, 'streamhost'))]
        t.res['hosts_offered'] = [h[0] for h in hosts]
        if self.args.s5b_fail:
            hosts = []
        if self.args.s5b_no_direct:
            # behave like a peer behind NAT: the initiator's own
            # streamhost cannot be reached, only the proxy can
            hosts = [h for h in hosts if JID(h[0]) != JID(peer)]
        dst = s5b_hash(sid, peer, str(iq['to']))
        if self.args.s5b_wrong_hash:
            dst = s5b_hash(sid + 'x', peer, str(iq['to']))
        conn = None
        used = None
        for jid, host, port in hosts:
            if not host or not port:
                continue
            try:
                conn = await socks5_connect(host, port, dst,
                                            self.args.s5b_timeout)
                used = jid
                break
            except (OSError, asyncio.TimeoutError,
                    asyncio.IncompleteReadError, ValueError) as e:
                log.info('streamhost %s %s:%s failed: %r', jid, host, port, e)
        if conn is None:
            error_reply(iq, 'cancel', 'item-not-found',
                        'could not connect to any streamhost')
            t.state = 's5b-failed'
            if 'ibb' in self.methods:
                t.timer = asyncio.get_event_loop().call_later(
                    self.args.fallback_wait, self._complete, t,
                    'no usable streamhost and no IBB fallback')
            else:
                self._complete(t, 'no usable streamhost')
            return
        t.used = 's5b-direct' if JID(used) == JID(peer) else 's5b-proxy'
        r = iq.reply(clear=True)
        rq = ET.Element(q(NS_S5B, 'query'), {'sid': sid})
        ET.SubElement(rq, q(NS_S5B, 'streamhost-used'), {'jid': used})
        r.append(rq)
        r.send()
        reader, writer = conn
        try:
            await self._s5b_read(t, reader)
        finally:
            writer.close()

    async def _s5b_read(self, t, reader):
        idle = self.args.idle_timeout
        try:
            while True:
                want = 1 << 16
                data = await asyncio.wait_for(reader.read(want), idle)
                if not data:
                    break
                self._write(t, data)
                if t.size is not None and t.got > t.size:
                    return self._complete(t, 'more data than announced '
                                          '(%d > %d)' % (t.got, t.size))
                if t.size is not None and t.got == t.size:
                    # Wait briefly for EOF; extra bytes are an error.
                    try:
                        extra = await asyncio.wait_for(reader.read(1), 2.0)
                    except asyncio.TimeoutError:
                        extra = b''
                    if extra:
                        self._write(t, extra)
                        return self._complete(t, 'more data than announced')
                    break
        except asyncio.TimeoutError:
            return self._complete(t, 'S5B idle for %ss' % idle)
        except (OSError, ConnectionError) as e:
            return self._complete(t, 'S5B read error: %r' % e)
        self._complete(t)

    # -- IBB
    async def _ibb_accept(self, iq):
        peer = str(iq['from'])
        sid = iq['ibb_open']['sid']
        t = self.transfers.get((peer, sid))
        if t is None or 'ibb' not in self.methods:
            return False
        if t.method == NS_IBB and t.state == 'accepted':
            return True
        if t.method == NS_S5B and t.state == 's5b-failed':
            return True          # libpurple-style fallback on the same SID
        return False

    def _t_for(self, stream):
        return self.transfers.get((str(stream.peer_jid), stream.sid))

    def _ibb_start(self, stream):
        t = self._t_for(stream)
        if t is None:
            return
        if t.timer:
            t.timer.cancel()
            t.timer = None
        t.state = 'ibb'
        t.used = 'ibb'
        t.stream = stream
        orig = stream._recv_data

        def strict_recv(stanza):
            # slixmpp answers an error to a bad block (bad base64, empty)
            # but keeps the stream open; XEP-0047 says close it.
            try:
                orig(stanza)
            except XMPPError:
                if not stream.stream_out_closed:
                    t.bad_block = True
                    stream.close()
                raise
        stream._recv_data = strict_recv
        if self.args.idle_timeout:
            self._arm_idle(t)

    def _arm_idle(self, t):
        if t.timer:
            t.timer.cancel()
        t.timer = asyncio.get_event_loop().call_later(
            self.args.idle_timeout, self._complete, t,
            'IBB idle for %ss' % self.args.idle_timeout)

    def _ibb_data(self, stream):
        t = self._t_for(stream)
        if t is None or t.state != 'ibb':
            return
        while not stream.recv_queue.empty():
            self._write(t, stream.recv_queue.get_nowait())
        self._arm_idle(t)

    def _ibb_end(self, stream):
        t = self._t_for(stream)
        if t is None or t.state != 'ibb':
            return
        while not stream.recv_queue.empty():
            self._write(t, stream.recv_queue.get_nowait())
        if getattr(t, 'bad_block', False) or (
                stream.stream_out_closed and not stream.stream_in_closed):
            # We closed it (seq error, oversized block): a failure.
            return self._complete(t, 'IBB stream closed by us after a '
                                  'protocol error')
        self._complete(t)


async def run_receive(args):
    os.makedirs(args.dir, exist_ok=True)
    c = Receiver(args)
    c.connect(address=_addr(args.server))
    try:
        await asyncio.wait_for(c.ready.wait(), min(args.timeout, 30))
    except asyncio.TimeoutError:
        emit({'ok': False, 'error': 'could not log in'})
        return 2
    if c.fatal:
        emit({'ok': False, 'error': c.fatal})
        return 2
    if args.ready_file:
        with open(args.ready_file, 'w') as f:
            f.write(str(c.boundjid) + '\n')
    rc = 0
    try:
        await asyncio.wait_for(c.done.wait(), args.timeout)
    except asyncio.TimeoutError:
        rc = 2
        log.warning('timeout after %s s: %d of %d offers', args.timeout,
                    c.finished, args.count)
        for t in list(c.transfers.values()):
            if t.state != 'done':
                c._complete(t, 'timeout (state %s, %d bytes)' % (t.state,
                                                                 t.got))
    if rc == 0 and c.failed:
        rc = 1
    await _disconnect(c)
    return rc


# ------------------------------------------------------------- send

class Sender(Peer):
    def __init__(self, args):
        super().__init__(args)
        self.setup_features()


async def _disconnect(c):
    try:
        fut = c.disconnect(wait=1.0)
        if fut is not None:
            await asyncio.wait_for(fut, 3)
    except Exception:
        pass


def _addr(server):
    host, _, port = server.rpartition(':')
    return (host or '127.0.0.1', int(port or 5222))


async def find_proxy(c, timeout):
    """(jid, host, port) of the server's SOCKS5 proxy, found by disco."""
    domain = c.boundjid.domain
    items = await c['xep_0030'].get_items(jid=domain, timeout=timeout)
    for it in items['disco_items']['items']:
        ijid = it[0]
        try:
            info = await c['xep_0030'].get_info(jid=ijid, timeout=timeout)
        except (IqError, IqTimeout):
            continue
        ids = info['disco_info']['identities']
        if any(i[0] == 'proxy' and i[1] == 'bytestreams' for i in ids):
            iq = c.make_iq_get(ito=ijid)
            iq.append(ET.Element(q(NS_S5B, 'query')))
            r = await iq.send(timeout=timeout)
            sh = r.xml.find('%s/%s' % (q(NS_S5B, 'query'),
                                       q(NS_S5B, 'streamhost')))
            if sh is not None:
                return sh.get('jid'), sh.get('host'), int(sh.get('port'))
    raise LookupError('no SOCKS5 proxy found on %s' % domain)


async def wait_presence(c, to, timeout):
    """Full JID of the target's highest-priority available resource."""
    tj = JID(to)
    if tj.resource:
        return str(tj)
    deadline = time.monotonic() + timeout
    while True:
        pres = c.client_roster.presence(tj.bare)
        if pres:
            best = max(pres.items(), key=lambda kv: kv[1].get('priority', 0))
            return '%s/%s' % (tj.bare, best[0])
        if time.monotonic() > deadline:
            raise TimeoutError('no presence from %s' % tj.bare)
        await asyncio.sleep(0.05)


def file_chunks(path, offset, length, bs):
    with open(path, 'rb') as f:
        f.seek(offset)
        left = length
        while left > 0:
            b = f.read(min(bs, left))
            if not b:
                break
            left -= len(b)
            yield b


async def run_send(args):
    c = Sender(args)
    t0 = time.monotonic()
    res = {'ok': False, 'method': None, 'error': None, 'sid': None,
           'to': None, 'offset': 0}
    try:
        real_size = os.path.getsize(args.file)
        md5 = hashlib.md5()
        with open(args.file, 'rb') as f:
            for b in iter(lambda: f.read(1 << 20), b''):
                md5.update(b)
        res['size'] = real_size
        res['md5'] = md5.hexdigest()
    except OSError as e:
        res['error'] = 'cannot read file: %s' % e
        emit(res)
        return 1
    c.connect(address=_addr(args.server))
    try:
        rc = await asyncio.wait_for(_send(c, args, res, real_size),
                                    args.timeout)
    except asyncio.TimeoutError:
        res['error'] = res.get('error') or 'timeout after %ss' % args.timeout
        rc = 1
    except Exception as e:
        res['error'] = error_condition(e)
        rc = 1
    res['seconds'] = round(time.monotonic() - t0, 3)
    res['ok'] = rc == 0
    emit(res)
    await _disconnect(c)
    return rc


async def _send(c, a, res, real_size):
    await c.ready.wait()
    if c.fatal:
        res['error'] = c.fatal
        return 1
    to = await wait_presence(c, a.to, a.timeout)
    res['to'] = to
    if not a.no_disco:
        info = await c['xep_0030'].get_info(jid=to, timeout=10, cached=False)
        feats = info['disco_info']['features']
        if NS_SI not in feats or NS_FT not in feats:
            res['error'] = 'target does not advertise SI file transfer'
            return 1
    method = a.method
    sid = 's' + uuid.uuid4().hex
    res['sid'] = sid
    if method in ('s5b-direct', 's5b-proxy'):
        offer = [NS_S5B]
    elif method == 'ibb':
        offer = [NS_IBB]
    else:
        offer = [NS_S5B, NS_IBB]

    if a.flood:
        return await flood(c, a, res, to, offer)

    # -- the offer
    iq = make_offer(c, a, res, to, sid, real_size, offer)
    try:
        r = await iq.send(timeout=a.answer_timeout)
    except IqError as e:
        res['error'] = 'offer refused: ' + error_condition(e)
        return 1
    except IqTimeout:
        res['error'] = 'no answer to the offer in %ss' % a.answer_timeout
        return 1
    chosen = None
    for v in r.xml.iter(q(NS_XDATA, 'value')):
        chosen = (v.text or '').strip()
    if chosen not in offer:
        res['error'] = 'answer chose %r, not offered' % chosen
        return 1
    offset, length = 0, real_size
    rng = r.xml.find('.//' + q(NS_FT, 'range'))
    if rng is not None and a.range:
        offset = int(rng.get('offset', '0'))
        length = int(rng.get('length', str(real_size - offset)))
    res['offset'] = offset
    if a.close_early is not None:
        length = min(length, a.close_early)

    if chosen == NS_IBB:
        res['method'] = 'ibb'
        return await send_ibb(c, a, res, to, sid, offset, length)
    return await send_s5b(c, a, res, to, sid, offset, length, method)


def make_offer(c, a, res, to, sid, real_size, offer):
    """The SI offer iq for a.file (honouring the hostile options)."""
    iq = c.make_iq_set(ito=to)
    si = ET.Element(q(NS_SI, 'si'), {'id': sid, 'profile': NS_FT,
                                     'mime-type': 'application/octet-stream'})
    fattrs = {'name': a.name if a.name is not None
              else os.path.basename(a.file),
              'size': str(a.lie_size if a.lie_size is not None
                          else real_size)}
    if a.hash == 'yes':
        h = res['md5']
        if a.bad_hash:
            h = hashlib.md5(b'not the content' + h.encode()).hexdigest()
        fattrs['hash'] = h
    fattrs['date'] = datetime.datetime.utcfromtimestamp(
        int(os.path.getmtime(a.file))).strftime('%Y-%m-%dT%H:%M:%SZ')
    fe = ET.SubElement(si, q(NS_FT, 'file'), fattrs)
    if a.desc:
        ET.SubElement(fe, q(NS_FT, 'desc')).text = a.desc
    if a.range:
        ET.SubElement(fe, q(NS_FT, 'range'))
    feat = ET.SubElement(si, q(NS_FNEG, 'feature'))
    x = ET.SubElement(feat, q(NS_XDATA, 'x'), {'type': 'form'})
    fld = ET.SubElement(x, q(NS_XDATA, 'field'),
                        {'var': 'stream-method', 'type': 'list-single'})
    for m in offer:
        o = ET.SubElement(fld, q(NS_XDATA, 'option'))
        ET.SubElement(o, q(NS_XDATA, 'value')).text = m
    iq.append(si)
    return iq


async def flood(c, a, res, to, offer):
    """--flood N: N offers at once (distinct SIDs), no streaming. Emits
    {flood, accepted, declined, errors: {condition: count}} at once, then
    keeps the connection (and the accepted offers pending) --flood-hold s."""
    sids = ['f%d-%s' % (i, uuid.uuid4().hex[:12]) for i in range(a.flood)]
    iqs = [make_offer(c, a, res, to, s, res['size'], offer) for s in sids]
    t0 = time.monotonic()
    out = await asyncio.gather(*[i.send(timeout=a.answer_timeout)
                                 for i in iqs], return_exceptions=True)
    acc, errs = [], {}
    for sid, r in zip(sids, out):
        if isinstance(r, BaseException):
            k = error_condition(r) if isinstance(r, (IqError, IqTimeout)) \
                else '%s: %s' % (type(r).__name__, r)
            errs[k] = errs.get(k, 0) + 1
        else:
            acc.append(sid)
    res.update({'flood': a.flood, 'accepted': len(acc),
                'declined': a.flood - len(acc), 'errors': errs,
                'accepted_sids': acc, 'method': 'flood',
                'flood_seconds': round(time.monotonic() - t0, 3)})
    emit(dict(res, phase='flooded', ok=True))
    if a.flood_hold:
        await asyncio.sleep(a.flood_hold)
    return 0


async def send_s5b(c, a, res, to, sid, offset, length, method):
    me = str(c.boundjid)
    dst = s5b_hash(sid, me, to)
    listener = None
    proxy = None
    hosts = []
    if a.s5b_dead:
        # A streamhost nobody listens on (a port that was free just now).
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        hosts.append((me, '127.0.0.1', s.getsockname()[1]))
        s.close()
    elif method in ('s5b-direct', 'auto'):
        listener = await S5BListener(wrong_reply=a.s5b_wrong_hash).start()
        fut = listener.expect(dst)
        hosts.append((me, '127.0.0.1', listener.port))
    if method in ('s5b-proxy', 'auto') and not a.s5b_dead:
        try:
            proxy = await find_proxy(c, 10)
            hosts.append(proxy)
        except (LookupError, IqError, IqTimeout) as e:
            if method == 's5b-proxy':
                res['error'] = 'proxy discovery failed: %s' % (
                    error_condition(e) if not isinstance(e, LookupError)
                    else e)
                return 1
    try:
        iq = c.make_iq_set(ito=to)
        qe = ET.Element(q(NS_S5B, 'query'), {'sid': sid, 'mode': 'tcp'})
        for jid, host, port in hosts:
            ET.SubElement(qe, q(NS_S5B, 'streamhost'),
                          {'jid': jid, 'host': host, 'port': str(port)})
        iq.append(qe)
        try:
            r = await iq.send(timeout=a.answer_timeout)
        except IqError as e:
            res['error'] = 'streamhosts refused: ' + error_condition(e)
            if a.fallback_ibb:
                log.info('S5B failed (%s); IBB on the same SID', res['error'])
                res['s5b_error'] = res['error']
                res['error'] = None
                res['method'] = 'ibb'
                return await send_ibb(c, a, res, to, sid, offset, length)
            return 1
        except IqTimeout:
            res['error'] = 'no streamhost-used in %ss' % a.answer_timeout
            return 1
        used = r.xml.find('%s/%s' % (q(NS_S5B, 'query'),
                                     q(NS_S5B, 'streamhost-used')))
        used = used.get('jid') if used is not None else None
        if listener and used and JID(used) == JID(me):
            res['method'] = 's5b-direct'
            try:
                reader, writer = await asyncio.wait_for(fut, 5)
            except asyncio.TimeoutError:
                res['error'] = 'streamhost-used names us, but no connection'
                return 1
        elif proxy and used and JID(used) == JID(proxy[0]):
            res['method'] = 's5b-proxy'
            pdst = dst
            if a.s5b_wrong_hash:
                pdst = s5b_hash(sid + 'x', me, to)
            try:
                reader, writer = await socks5_connect(proxy[1], proxy[2],
                                                      pdst, 10)
            except (OSError, asyncio.TimeoutError,
                    asyncio.IncompleteReadError) as e:
                res['error'] = 'cannot connect to the proxy: %r' % e
                return 1
            act = c.make_iq_set(ito=proxy[0])
            aq = ET.Element(q(NS_S5B, 'query'), {'sid': sid})
            ET.SubElement(aq, q(NS_S5B, 'activate')).text = to
            act.append(aq)
            try:
                await act.send(timeout=10)
            except (IqError, IqTimeout) as e:
                writer.close()
                res['error'] = 'activate failed: ' + error_condition(e)
                return 1
        else:
            res['error'] = 'streamhost-used names an unknown host %r' % used
            return 1
        try:
            for b in file_chunks(a.file, offset, length, 1 << 16):
                writer.write(b)
                await writer.drain()
            if a.no_close:
                await asyncio.sleep(a.timeout)
            if writer.can_write_eof():
                writer.write_eof()
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 10)
        except (OSError, ConnectionError) as e:
            res['error'] = 'S5B write failed: %r' % e
            return 1
        return 0
    finally:
        if listener:
            listener.close()


async def send_ibb(c, a, res, to, sid, offset, length):
    try:
        stream = await c['xep_0047'].open_stream(JID(to), block_size=4096,
                                                 sid=sid, timeout=10)
    except (IqError, IqTimeout) as e:
        res['error'] = 'IBB open refused: ' + error_condition(e)
        return 1
    bs = 4096
    seq = 0
    nblocks = (length + bs - 1) // bs
    bad_at = skip_at = 1 if nblocks > 1 else 0
    for i, b in enumerate(file_chunks(a.file, offset, length, bs)):
        if a.ibb_skip_seq and seq == skip_at:
            seq += 1            # skip seq 1 (or start at 1 if one block)
        text = base64.b64encode(b).decode()
        if a.ibb_bad_base64 and i == bad_at:
            text = '!!not*base64$$' + text[14:]
        iq = c.make_iq_set(ito=to)
        de = ET.Element(q(NS_IBB, 'data'), {'sid': sid, 'seq': str(seq)})
        de.text = text
        iq.append(de)
        try:
            await iq.send(timeout=a.answer_timeout)
        except (IqError, IqTimeout) as e:
            res['error'] = 'IBB data seq %d refused: %s' % (
                seq, error_condition(e))
            return 1
        seq = (seq + 1) % 65536
        if a.ibb_foreign_sid and i == 0:
            await ibb_foreign(c, a, res, to, sid)
    if a.ibb_foreign_sid and length == 0:
        await ibb_foreign(c, a, res, to, sid)
    if a.no_close:
        await asyncio.sleep(a.timeout)
    stream.send_seq = seq - 1
    try:
        await asyncio.wait_for(stream.close(timeout=5), 5)
    except (IqError, IqTimeout, asyncio.TimeoutError) as e:
        log.info('IBB close: %s', error_condition(e))
    if a.ibb_foreign_sid:
        # The SID we just closed: data for it must be refused too.
        res['closed_data'] = await raw_iq_result(
            c, a, to, ibb_data_el(sid, seq, b'after close'))
    return 0


def ibb_data_el(sid, seq, data):
    de = ET.Element(q(NS_IBB, 'data'), {'sid': sid, 'seq': str(seq)})
    de.text = base64.b64encode(data).decode()
    return de


async def raw_iq_result(c, a, to, el):
    """Send an iq-set with el; 'result' or the error condition."""
    iq = c.make_iq_set(ito=to)
    iq.append(el)
    try:
        await iq.send(timeout=min(a.answer_timeout, 10))
        return 'result'
    except (IqError, IqTimeout) as e:
        return error_condition(e)


async def ibb_foreign(c, a, res, to, sid):
    """--ibb-foreign-sid: in the middle of a good stream, an <open/> and a
    <data/> for SIDs the target never accepted."""
    fsid = 'foreign-' + uuid.uuid4().hex[:12]
    res['foreign_data'] = await raw_iq_result(
        c, a, to, ibb_data_el(fsid, 0, b'foreign data'))
    res['foreign_open'] = await raw_iq_result(
        c, a, to, ET.Element(q(NS_IBB, 'open'), {
            'sid': fsid + 'o', 'block-size': '4096', 'stanza': 'iq'}))


# ------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(prog='slixpeer.py',
                                 description=__doc__.split('\n')[0],
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument('--jid', required=True)
    ap.add_argument('--password')
    ap.add_argument('--password-file')
    ap.add_argument('--server', default='127.0.0.1:5222')
    ap.add_argument('--cafile')
    ap.add_argument('--priority', type=int, default=0)
    ap.add_argument('-v', '--verbose', action='count', default=0)
    sub = ap.add_subparsers(dest='mode', required=True)

    r = sub.add_parser('receive')
    r.add_argument('--dir', required=True)
    r.add_argument('--count', type=int, default=1)
    r.add_argument('--timeout', type=float, default=60)
    r.add_argument('--accept', choices=('yes', 'no'), default='yes')
    r.add_argument('--methods', default='s5b,ibb')
    r.add_argument('--s5b-timeout', type=float, default=5)
    r.add_argument('--fallback-wait', type=float, default=30)
    r.add_argument('--idle-timeout', type=float, default=30)
    r.add_argument('--s5b-wrong-hash', action='store_true')
    r.add_argument('--s5b-fail', action='store_true')
    r.add_argument('--s5b-no-direct', action='store_true',
                   help="skip the sender's own streamhost (as if behind "
                        "NAT); only proxies are tried")
    r.add_argument('--ready-file', help='write our full JID here once '
                   'logged in and ready for offers')

    s = sub.add_parser('send')
    s.add_argument('--to', required=True)
    s.add_argument('--file', required=True)
    s.add_argument('--method', default='auto',
                   choices=('auto', 's5b-direct', 's5b-proxy', 'ibb'))
    s.add_argument('--hash', choices=('yes', 'no'), default='yes')
    s.add_argument('--timeout', type=float, default=60)
    s.add_argument('--answer-timeout', type=float, default=30,
                   help='wait this long for each answer of the target')
    s.add_argument('--range', action='store_true')
    s.add_argument('--no-disco', action='store_true')
    s.add_argument('--desc')
    s.add_argument('--lie-size', type=int)
    s.add_argument('--bad-hash', action='store_true')
    s.add_argument('--name')
    s.add_argument('--ibb-bad-base64', action='store_true')
    s.add_argument('--ibb-skip-seq', action='store_true')
    s.add_argument('--s5b-wrong-hash', action='store_true')
    s.add_argument('--close-early', type=int, metavar='N')
    s.add_argument('--no-close', action='store_true')
    s.add_argument('--s5b-dead', action='store_true')
    s.add_argument('--fallback-ibb', action='store_true')
    s.add_argument('--ibb-foreign-sid', action='store_true')
    s.add_argument('--flood', type=int, metavar='N')
    s.add_argument('--flood-hold', type=float, default=0, metavar='S')
    a = ap.parse_args(argv)
    if a.password is None:
        if a.password_file:
            with open(a.password_file) as f:
                a.password = f.readline().rstrip('\n')
        else:
            a.password = os.environ.get('SLIXPEER_PASSWORD')
    if a.password is None:
        ap.error('--password or --password-file required')
    return a


def escape_ws_attrs():
    """Serialise TAB, LF and CR as character references. slixmpp writes
    them raw, and XML attribute-value normalisation (XML 1.0 §3.3.3) then
    turns them into spaces on the way: --name 'a\tb' would arrive as
    'a b'. Other C0 characters cannot be carried by XML 1.0 at all."""
    import importlib
    # The module, not the function slixmpp.xmlstream re-exports by name.
    mod = importlib.import_module('slixmpp.xmlstream.tostring')
    orig = mod.escape
    refs = {'\t': '&#9;', '\n': '&#10;', '\r': '&#13;'}

    def escape(text, use_cdata=False):
        out = orig(text, use_cdata)
        if use_cdata or not any(ch in out for ch in refs):
            return out
        return ''.join(refs.get(ch, ch) for ch in out)
    mod.escape = escape


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if getattr(a, 'name', None) and any(ch in a.name for ch in '\t\n\r'):
        escape_ws_attrs()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if a.verbose > 1 else
        logging.INFO if a.verbose else logging.WARNING,
        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    if a.verbose < 2:
        logging.getLogger('slixmpp').setLevel(logging.ERROR)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        coro = run_receive(a) if a.mode == 'receive' else run_send(a)
        rc = loop.run_until_complete(coro)
    finally:
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        try:
            loop.run_until_complete(asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), 2))
        except Exception:
            pass
        loop.close()
    return rc


if __name__ == '__main__':
    sys.exit(main())
