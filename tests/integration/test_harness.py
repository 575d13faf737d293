"""Tests of the test harness itself: the private Prosody, and the slixmpp
SI file-transfer peer (tests/peer/slixpeer.py) talking to itself through it.
"""

import asyncio
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

import xfsutil

slixmpp = pytest.importorskip('slixmpp')

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(os.path.dirname(HERE), 'peer', 'slixpeer.py')


# ------------------------------------------------------------ Prosody

class _Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, cafile):
        super().__init__(jid, password)
        self.ca_certs = cafile
        self.register_plugin('xep_0030')
        self.seen = set()
        self.ready = asyncio.Event()
        self.add_event_handler('session_start', self._start)
        self.add_event_handler('presence_available', self._avail)

    async def _start(self, _):
        self.send_presence()
        await self.get_roster()
        self.ready.set()

    def _avail(self, pres):
        if pres['from'].bare != self.boundjid.bare:
            self.seen.add(pres['from'].bare)


def _run_clients(prosody, names, body, timeout=15):
    """Connect one slixmpp client per name on a private event loop and run
    `await body(clients)`; always disconnect."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def main():
        clients = {n: _Client(prosody.jid(n) + '/harness',
                              prosody.password(n), prosody.cafile)
                   for n in names}
        for c in clients.values():
            c.connect((prosody.host, prosody.port))
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.ready.wait() for c in clients.values())),
                timeout)
            return await asyncio.wait_for(body(clients), timeout)
        finally:
            for c in clients.values():
                c.disconnect(wait=0.5)
            await asyncio.sleep(0.1)

    try:
        return loop.run_until_complete(main())
    finally:
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending,
                                               return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(None)


async def _until(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.05)
    return True


def test_prosody_facts(prosody):
    assert prosody.domain == 'localhost'
    assert prosody.host == '127.0.0.1'
    assert prosody.proxy_jid == 'proxy.localhost'
    assert prosody.jid('bob') == 'bob@localhost'
    assert set(prosody.accounts) >= {'%s@localhost' % n for n in
                                     ('alice', 'bob', 'carol', 'dave', 'eve')}
    assert prosody.password('alice') == prosody.accounts['alice@localhost']
    assert os.path.exists(prosody.cafile) and os.path.exists(prosody.log_path)
    assert xfsutil.port_open('127.0.0.1', prosody.port)
    assert xfsutil.port_open('127.0.0.1', prosody.proxy_port)
    assert prosody.pid and os.path.exists('/proc/%d' % prosody.pid)
    cfg = open(prosody.config_path).read()
    assert '"limits"' not in cfg and 'nagle = false' in cfg
    # The cert verifies against the CA for the name 'localhost'.
    r = subprocess.run(['openssl', 'verify', '-CAfile', prosody.cafile,
                        '-verify_hostname', 'localhost', prosody.certfile],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout


def test_presence_groups_and_proxy(prosody):
    async def body(c):
        a, b, e = c['alice'], c['bob'], c['eve']
        ok = await _until(lambda: 'bob@localhost' in a.seen
                          and 'alice@localhost' in b.seen)
        assert ok, (a.seen, b.seen)
        assert a.client_roster['bob@localhost']['subscription'] == 'both'
        assert 'eve@localhost' not in a.client_roster.keys()
        info = await a['xep_0030'].get_info(jid=prosody.proxy_jid, timeout=5)
        feats = info['disco_info']['features']
        assert 'http://jabber.org/protocol/bytestreams' in feats
        q = a.make_iq_get(ito=prosody.proxy_jid)
        q.append(ET.Element('{http://jabber.org/protocol/bytestreams}query'))
        r = await q.send(timeout=5)
        sh = r.xml.find('{http://jabber.org/protocol/bytestreams}query/'
                        '{http://jabber.org/protocol/bytestreams}streamhost')
        assert sh is not None
        assert sh.get('host') == '127.0.0.1'
        assert int(sh.get('port')) == prosody.proxy_port
        await asyncio.sleep(0.3)     # any stray presence would arrive now
        assert e.seen == set(), e.seen
        assert 'eve@localhost' not in a.seen
    _run_clients(prosody, ['alice', 'bob', 'eve'], body)


def test_prosody_restart_and_make_account(prosody):
    port, pport = prosody.port, prosody.proxy_port
    old = prosody.pid
    prosody.stop()
    assert not xfsutil.port_open('127.0.0.1', port)
    prosody.start()
    assert prosody.pid != old
    assert (prosody.port, prosody.proxy_port) == (port, pport)
    jid = prosody.make_account('frank', 'frank-pw')
    assert prosody.password('frank') == 'frank-pw'

    async def body(c):
        return c['frank'].boundjid.bare
    assert _run_clients(prosody, ['frank'], body) == jid


def test_limits_config(tmp_path):
    p = xfsutil.Prosody(str(tmp_path), limits=True, nagle=True)
    p.cafile = p.certfile = p.keyfile = '/x'
    p._write_config()
    cfg = open(p.config_path).read()
    assert '"limits"' in cfg and 'rate = "10kb/s"' in cfg
    assert 'nagle' not in cfg


def test_helpers(tmp_path):
    f = tmp_path / 'a'
    h = xfsutil.make_file(str(f), 3 * (1 << 20) + 5, seed=7)
    assert os.path.getsize(f) == 3 * (1 << 20) + 5
    assert xfsutil.md5_file(str(f)) == h
    assert xfsutil.make_file(str(tmp_path / 'b'), 3 * (1 << 20) + 5, 7) == h
    assert xfsutil.make_file(str(tmp_path / 'c'), 3 * (1 << 20) + 5, 8) != h
    data = f.read_bytes()
    assert data[:1 << 20] != data[1 << 20:2 << 20]   # blocks differ
    assert xfsutil.make_file(str(tmp_path / 'z'), 0) == \
        'd41d8cd98f00b204e9800998ecf8427e'
    assert xfsutil.wait_for(lambda: 5, 1) == 5
    with pytest.raises(TimeoutError):
        xfsutil.wait_for(lambda: False, 0.1, msg='never')


def test_cli_prosody(tmp_path):
    script = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'scripts',
                          'prosody-env.sh')
    p = subprocess.Popen([script, '--dir', str(tmp_path / 'p')],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        info = json.loads(line)
        assert xfsutil.port_open('127.0.0.1', info['port'])
        assert info['accounts']['bob@localhost']
        assert os.path.exists(info['cafile'])
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0
    assert not xfsutil.port_open('127.0.0.1', info['port'])


# ------------------------------------------------------------ slixpeer

SIZES = [0, 1, 1 << 20]
METHODS = ['s5b-direct', 's5b-proxy', 'ibb']


@pytest.mark.parametrize('size', SIZES, ids=['0B', '1B', '1MiB'])
@pytest.mark.parametrize('method', METHODS)
def test_peer_to_peer(prosody, tmp_path, method, size):
    src = tmp_path / 'src.bin'
    md5 = xfsutil.make_file(str(src), size, seed=size)
    rdir = tmp_path / 'in'
    r = xfsutil.PeerReceiver(prosody, 'bob', str(rdir), count=1, timeout=20,
                             resource='recv-' + method)
    try:
        r.wait_ready()
        rc, res = xfsutil.peer_send(prosody, 'alice', r.jid, str(src),
                                    method=method, timeout=20,
                                    log_path=str(tmp_path / 'send.log'))
        assert rc == 0 and res['ok'], res
        assert res['method'] == method
        assert res['md5'] == md5 and res['size'] == size
        out = r.results()
    finally:
        r.stop()
    assert r.returncode == 0, xfsutil.tail(r.log_path)
    assert len(out) == 1
    got = out[0]
    assert got['ok'], got
    assert got['method'] == method
    assert (got['size'], got['md5'], got['offered_hash']) == (size, md5, md5)
    assert got['name'] == 'src.bin'
    assert xfsutil.md5_file(got['path']) == md5
    assert os.listdir(str(rdir)) == ['src.bin']      # no .part left over


def test_peer_auto_and_bare_jid(prosody, tmp_path):
    """Default method with a bare --to: bytestreams (direct first)."""
    src = tmp_path / 'a.bin'
    md5 = xfsutil.make_file(str(src), 70000, seed=3)
    r = xfsutil.PeerReceiver(prosody, 'carol', str(tmp_path / 'in'),
                             timeout=20)
    try:
        r.wait_ready()
        rc, res = xfsutil.peer_send(prosody, 'dave', 'carol', str(src),
                                    timeout=20)
        assert rc == 0 and res['method'] == 's5b-direct', res
        out = r.results()
    finally:
        r.stop()
    assert out[0]['ok'] and out[0]['md5'] == md5


def test_peer_methods_ibb_only_and_decline(prosody, tmp_path):
    src = tmp_path / 'b.bin'
    xfsutil.make_file(str(src), 5000, seed=4)
    r = xfsutil.PeerReceiver(prosody, 'bob', str(tmp_path / 'in'), count=2,
                             timeout=20, resource='ibbonly',
                             extra=['--methods', 'ibb'])
    try:
        r.wait_ready()
        rc, res = xfsutil.peer_send(prosody, 'alice', r.jid, str(src),
                                    timeout=20)
        assert rc == 0 and res['method'] == 'ibb', res
        rc, res = xfsutil.peer_send(prosody, 'alice', r.jid, str(src),
                                    method='s5b-direct', timeout=20)
        assert rc == 1 and 'no acceptable stream method' in res['error'], res
        out = r.results()
    finally:
        r.stop()
    assert [o['ok'] for o in out] == [True, False]
    assert 'no-valid-streams' in out[1]['error']

    r = xfsutil.PeerReceiver(prosody, 'bob', str(tmp_path / 'in2'),
                             timeout=20, resource='decline',
                             extra=['--accept', 'no'])
    try:
        r.wait_ready()
        rc, res = xfsutil.peer_send(prosody, 'alice', r.jid, str(src),
                                    timeout=20)
        assert rc == 1 and 'forbidden' in res['error'], res
        out = r.results()
    finally:
        r.stop()
    assert out[0]['error'] == 'declined'
    assert os.listdir(str(tmp_path / 'in2')) == []


# ------------------------------------------------------------ hostile sender

# (id, file size, send method, send extra args, receiver extra args,
#  expected send rc, substring of send error, receiver ok, substring of
#  receiver error)
HOSTILE = [
    ('lie-size-bigger', 10000, 's5b-direct', ['--lie-size', '20000'], [],
     0, None, False, 'size mismatch'),
    ('lie-size-smaller', 10000, 'ibb', ['--lie-size', '100'], [],
     0, None, False, 'size mismatch'),
    ('lie-size-smaller-s5b', 10000, 's5b-proxy', ['--lie-size', '100'], [],
     0, None, False, 'more data than announced'),
    ('bad-hash', 10000, 's5b-proxy', ['--bad-hash'], [],
     0, None, False, 'hash mismatch'),
    ('no-hash', 10000, 'ibb', ['--hash', 'no'], [], 0, None, True, None),
    ('ibb-bad-base64', 10000, 'ibb', ['--ibb-bad-base64'],
     ['--idle-timeout', '3'], 1, 'not-acceptable', False, 'IBB'),
    ('ibb-skip-seq', 10000, 'ibb', ['--ibb-skip-seq'],
     ['--idle-timeout', '3'], 1, 'unexpected-request', False, 'IBB'),
    ('ibb-skip-seq-1block', 100, 'ibb', ['--ibb-skip-seq'],
     ['--idle-timeout', '3'], 1, 'unexpected-request', False, 'IBB'),
    ('s5b-wrong-hash-proxy', 10000, 's5b-proxy', ['--s5b-wrong-hash'],
     ['--idle-timeout', '2'], 1, 'activate failed', False, 'idle'),
    ('receiver-wrong-hash', 10000, 's5b-direct', [],
     ['--s5b-wrong-hash', '--fallback-wait', '1'], 1, 'item-not-found',
     False, 'no usable streamhost'),
    ('close-early', 10000, 's5b-direct', ['--close-early', '5000'], [],
     0, None, False, 'size mismatch'),
    ('fallback-ibb', 10000, 's5b-direct', ['--s5b-dead', '--fallback-ibb'],
     ['--s5b-timeout', '1'], 0, None, True, None),
    ('receiver-s5b-fail', 10000, 's5b-proxy', ['--fallback-ibb'],
     ['--s5b-fail'], 0, None, True, None),
]


@pytest.mark.parametrize('case', HOSTILE, ids=[c[0] for c in HOSTILE])
def test_peer_hostile(prosody, tmp_path, case):
    (_, size, method, sargs, rargs, src_rc, serr, rok, rerr) = case
    src = tmp_path / 'h.bin'
    md5 = xfsutil.make_file(str(src), size, seed=11)
    rdir = tmp_path / 'in'
    r = xfsutil.PeerReceiver(prosody, 'bob', str(rdir), timeout=15,
                             resource='hostile', extra=rargs)
    try:
        r.wait_ready()
        rc, res = xfsutil.peer_send(prosody, 'alice', r.jid, str(src),
                                    method=method, timeout=15, extra=sargs,
                                    log_path=str(tmp_path / 'send.log'))
        out = r.results()
    finally:
        r.stop()
    assert rc == src_rc, res
    if serr:
        assert serr in res['error'], res
    assert len(out) == 1, out
    assert out[0]['ok'] == rok, out
    if rok:
        assert out[0]['md5'] == md5
        assert os.listdir(str(rdir)) == ['h.bin']
    else:
        assert rerr in out[0]['error'], out
        assert os.listdir(str(rdir)) == []       # nothing published
    if 'fallback' in case[0] or 's5b-fail' in case[0]:
        assert res['method'] == 'ibb' and res['s5b_error'], res
        assert out[0]['method'] == 'ibb'


def test_peer_hostile_name(prosody, tmp_path):
    src = tmp_path / 'n.bin'
    xfsutil.make_file(str(src), 10, seed=1)
    r = xfsutil.PeerReceiver(prosody, 'bob', str(tmp_path / 'in'), count=2,
                             timeout=15, resource='names')
    try:
        r.wait_ready()
        for name in ('../../x', '..'):
            rc, res = xfsutil.peer_send(prosody, 'alice', r.jid, str(src),
                                        method='ibb', timeout=15,
                                        extra=['--name', name])
            assert rc == 0, res
        out = r.results()
    finally:
        r.stop()
    assert [o['name'] for o in out] == ['../../x', '..']
    assert sorted(os.listdir(str(tmp_path / 'in'))) == ['unnamed', 'x']
    assert not os.path.exists(str(tmp_path / 'x'))
