"""Interop: xmppfs against slixpeer, an SI peer we did not build xmppfs on.

tests/peer/slixpeer.py runs on slixmpp 1.8.3 (Debian) with its own SI,
SOCKS5 and IBB code paths, so these tests catch mistakes that two xmppfs
mounts talking to each other would agree on. Both directions, every method:

- xmppfs sends (alice's mount, cp into outbox/bob@localhost/) to a
  `slixpeer receive` logged in as bob: S5B direct (default), S5B through
  the server's proxy65 (mount option s5b_host=none), IBB (methods=ibb),
  and a receiver that fails every streamhost (--s5b-fail) so xmppfs must
  open IBB on the same SID (libpurple's fallback);
- slixpeer sends (`slixpeer send` as alice) to bob's mount: --method
  s5b-direct, s5b-proxy, ibb, auto; offers without a hash (--hash no); a
  dead streamhost (--s5b-dead) followed by IBB on the same SID
  (--fallback-ibb).

Sizes 0 B, 1 B, 1 MiB, and 20 MiB over S5B each way. Checked every time:
the MD5 of what arrived, the JSON result of the peer, the xattrs on the
xmppfs side (outbox: state, method, progress, peer; inbox: state, method,
peer), the xmppfs inbox listing and status line, and that the data
directory holds nothing but its own files.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_interop_slixmpp.py
"""

import os
import shutil
import time

import pytest

import xfsutil
from xfsutil import (PeerReceiver, data_dir_strays, inbox_listing,
                     make_file, md5_file, peer_send, read_status, tail,
                     wait_for, xattr_str)

KiB = 1024
MiB = 1024 * 1024
ALICE = 'alice@localhost'
BOB = 'bob@localhost'
XFER_TIMEOUT = 40

# Mount options of the sending xmppfs that select a stream method.
SEND_OPTS = {
    's5b-direct': {},
    's5b-proxy': {'s5b_host': 'none'},
    'ibb': {'methods': 'ibb'},
}
TERMINAL = ('sent', 'rejected', 'failed', 'cancelled')


def _sid(s):
    return '%dMiB' % (s // MiB) if s >= MiB else '%dB' % s


def diag(*things, lines=30):
    out = []
    for t in things:
        if isinstance(t, xfsutil.Mount):
            out.append('--- %s log (%s):\n%s' % (t.jid, t.log_path,
                                                 tail(t.log_path, lines)))
        elif isinstance(t, PeerReceiver):
            out.append('--- slixpeer receiver log (%s):\n%s'
                       % (t.log_path, tail(t.log_path, lines)))
        elif isinstance(t, str) and os.path.exists(t):
            out.append('--- %s:\n%s' % (t, tail(t, lines)))
    return '\n'.join(out)


def outdir(m, jid):
    d = m.outbox(jid)
    try:
        os.mkdir(d)
    except FileExistsError:
        pass
    return d


def out_xattrs(path):
    return dict((k, xattr_str(path, k))
                for k in ('state', 'progress', 'error', 'peer', 'method'))


def wait_out_terminal(m, path, timeout=XFER_TIMEOUT, others=()):
    """xattrs of outbox file `path` once its state is terminal."""
    last = {}

    def done():
        last.update(out_xattrs(path))
        return last['state'] in TERMINAL
    try:
        wait_for(done, timeout, interval=0.05)
    except TimeoutError:
        pytest.fail('%s: state %r after %ss (xattrs %r)\n%s'
                    % (path, last.get('state'), timeout, last,
                       diag(m, *others)))
    return dict(last)


def wait_inbox_name(m, sender, name, timeout=XFER_TIMEOUT, others=()):
    try:
        wait_for(lambda: name in inbox_listing(m).get(sender, []), timeout,
                 interval=0.02)
    except TimeoutError:
        pytest.fail('%s: %r not in inbox/%s after %ss (inbox %r, status '
                    '%r)\n%s' % (m.jid, name, sender, timeout,
                                 inbox_listing(m), read_status(m.path)[1],
                                 diag(m, *others)))


# ------------------------------------------------ xmppfs sends, slixpeer gets

X2P = ([(m, s) for m in ('s5b-direct', 's5b-proxy', 'ibb')
        for s in (0, 1, MiB)]
       + [('s5b-direct', 20 * MiB), ('s5b-proxy', 20 * MiB)])


def xmppfs_to_peer(prosody, xmppfs, tmp_path, method, size, mount_opts,
                   recv_extra=(), resource='slix-in'):
    """alice's mount sends one file to a slixpeer receiver logged in as
    bob. Returns (alice mount, outbox path, xattrs, peer result, digest,
    receiver dir, receiver jid)."""
    src = tmp_path / ('x2p-%s-%d.bin' % (method, size))
    digest = make_file(str(src), size, seed='x2p%s%d' % (method, size))
    rdir = str(tmp_path / 'peer-in')
    r = PeerReceiver(prosody, 'bob', rdir, count=1, timeout=XFER_TIMEOUT,
                     resource=resource, extra=list(recv_extra))
    try:
        rjid = r.wait_ready()
        a = xmppfs('alice', **mount_opts)
        d = outdir(a, BOB)
        shutil.copyfile(str(src), os.path.join(d, src.name))
        dst = os.path.join(d, src.name)
        x = wait_out_terminal(a, dst, others=(r,))
        out = r.results(timeout=XFER_TIMEOUT)
    finally:
        r.stop()
    assert len(out) == 1, (out, diag(a, r))
    return a, dst, x, out[0], digest, rdir, rjid, src.name, r


@pytest.mark.parametrize('method,size', X2P,
                         ids=['%s-%s' % (m, _sid(s)) for m, s in X2P])
def test_xmppfs_to_peer(prosody, xmppfs, tmp_path, method, size):
    a, dst, x, got, digest, rdir, rjid, name, r = xmppfs_to_peer(
        prosody, xmppfs, tmp_path, method, size, SEND_OPTS[method])
    # xmppfs side
    assert x['state'] == 'sent', (x, diag(a, r))
    assert x['method'] == method, (x, diag(a, r))
    assert int(x['progress']) == size, x
    assert x['peer'] == rjid, (x, rjid)
    assert x['error'] == '', x
    assert md5_file(dst) == digest      # the outbox copy stays as it was
    rows = [w for w in read_status(a.path)[1] if w['name'] == name]
    assert [(w['dir'], w['state'], w['progress'], w['size'], w['method'],
             w['jid']) for w in rows] == [
        ('out', 'sent', size, size, method, BOB)], rows
    # slixpeer side: ok, method, size, and xmppfs always offers the hash
    assert got['ok'], (got, diag(a, r))
    assert got['method'] == method, got
    assert (got['size'], got['md5'], got['offered_hash']) == \
        (size, digest, digest), got
    assert got['name'] == name and got['from'] == a.jid + '/xmppfs', got
    assert os.listdir(rdir) == [name]           # no .part left over
    assert md5_file(os.path.join(rdir, name)) == digest
    assert data_dir_strays(a.data_dir) == []


def test_xmppfs_to_peer_s5b_fails_ibb_same_sid(prosody, xmppfs, tmp_path):
    """The receiver picks bytestreams but no streamhost works for it
    (--s5b-fail answers item-not-found at once): xmppfs opens IBB on the
    same SID, as libpurple does, and the file arrives."""
    size = 100 * KiB + 3
    a, dst, x, got, digest, rdir, rjid, name, r = xmppfs_to_peer(
        prosody, xmppfs, tmp_path, 'fallback', size, {},
        recv_extra=['--s5b-fail', '--fallback-wait', '15'],
        resource='slix-s5bfail')
    assert x['state'] == 'sent', (x, diag(a, r))
    assert x['method'] == 'ibb', (x, diag(a, r))
    assert int(x['progress']) == size
    assert got['ok'] and got['method'] == 'ibb', (got, diag(a, r))
    assert got['md5'] == digest and got['size'] == size, got
    assert md5_file(os.path.join(rdir, name)) == digest
    assert 'falling back to in-band' in a.log_text(), diag(a)


# ------------------------------------------------ slixpeer sends, xmppfs gets

P2X_METHODS = ('s5b-direct', 's5b-proxy', 'ibb', 'auto')
P2X = ([(m, s) for m in P2X_METHODS for s in (0, 1, MiB)]
       + [('s5b-direct', 20 * MiB), ('s5b-proxy', 20 * MiB)])
# What xmppfs must report for a peer method: auto offers our listener
# first, so xmppfs connects directly.
P2X_EXPECT = {'s5b-direct': 's5b-direct', 's5b-proxy': 's5b-proxy',
              'ibb': 'ibb', 'auto': 's5b-direct'}


def peer_to_xmppfs(prosody, xmppfs, tmp_path, method, size, extra=(),
                   tag=None, bob_opts=None):
    b = xmppfs('bob', **(bob_opts or {}))
    tag = tag or method
    src = tmp_path / ('p2x-%s-%d.bin' % (tag, size))
    digest = make_file(str(src), size, seed='p2x%s%d' % (tag, size))
    plog = str(tmp_path / 'peer-send.log')
    rc, res = peer_send(prosody, 'alice', 'bob', str(src), method=method,
                        timeout=XFER_TIMEOUT, extra=list(extra),
                        log_path=plog)
    return b, src.name, digest, rc, res, plog


def check_received(b, name, size, digest, method, plog=None):
    """bob's mount shows name from alice, complete and verified."""
    wait_inbox_name(b, ALICE, name, others=(plog,) if plog else ())
    p = os.path.join(b.inbox(ALICE), name)
    assert inbox_listing(b) == {ALICE: [name]}, inbox_listing(b)
    assert os.stat(p).st_size == size
    assert md5_file(p) == digest
    xa = dict((k, xattr_str(p, k)) for k in ('state', 'method', 'peer'))
    assert xa == {'state': 'received', 'method': method,
                  'peer': ALICE + '/sender'}, (xa, diag(b))
    rows = [w for w in read_status(b.path)[1] if w['dir'] == 'in']
    assert [(w['state'], w['progress'], w['size'], w['method'], w['jid'],
             w['name'], w['error']) for w in rows] == [
        ('received', size, size, method, ALICE, name, '-')], rows
    assert os.listdir(os.path.join(b.data_dir, 'partial')) == []
    assert data_dir_strays(b.data_dir) == []


@pytest.mark.parametrize('method,size', P2X,
                         ids=['%s-%s' % (m, _sid(s)) for m, s in P2X])
def test_peer_to_xmppfs(prosody, xmppfs, tmp_path, method, size):
    b, name, digest, rc, res, plog = peer_to_xmppfs(
        prosody, xmppfs, tmp_path, method, size)
    want = P2X_EXPECT[method]
    assert rc == 0 and res['ok'], (res, diag(b, plog))
    assert res['method'] == want, res
    assert (res['size'], res['md5']) == (size, digest), res
    assert res['to'] == BOB + '/xmppfs', res
    check_received(b, name, size, digest, want, plog)


@pytest.mark.parametrize('method', ['s5b-direct', 's5b-proxy', 'ibb'])
def test_peer_to_xmppfs_no_hash(prosody, xmppfs, tmp_path, method):
    """Most deployed peers send no hash (INTEROP §1, §6): accepted, size
    still checked, the file arrives."""
    size = MiB + 5
    b, name, digest, rc, res, plog = peer_to_xmppfs(
        prosody, xmppfs, tmp_path, method, size, extra=['--hash', 'no'],
        tag='nohash-' + method)
    assert rc == 0 and res['ok'], (res, diag(b, plog))
    assert res['method'] == method
    check_received(b, name, size, digest, method, plog)


def test_peer_to_xmppfs_dead_streamhost_then_ibb(prosody, xmppfs,
                                                 tmp_path):
    """slixpeer offers only a streamhost nobody listens on; xmppfs answers
    item-not-found and accepts IBB on the same SID (libpurple's habit)."""
    size = 200 * KiB + 1
    b, name, digest, rc, res, plog = peer_to_xmppfs(
        prosody, xmppfs, tmp_path, 's5b-direct', size,
        extra=['--s5b-dead', '--fallback-ibb'], tag='dead')
    assert rc == 0 and res['ok'], (res, diag(b, plog))
    assert res['method'] == 'ibb', res
    assert 'item-not-found' in (res.get('s5b_error') or ''), res
    check_received(b, name, size, digest, 'ibb', plog)


def test_both_directions_at_once(prosody, xmppfs, tmp_path):
    """One mount receiving from a slixpeer (dave) while it sends to
    another (carol)."""
    a = xmppfs('alice')
    rdir = str(tmp_path / 'peer-in')
    r = PeerReceiver(prosody, 'carol', rdir, count=1, timeout=XFER_TIMEOUT,
                     resource='slix-both')
    src1 = tmp_path / 'to-carol.bin'
    d1 = make_file(str(src1), 3 * MiB + 1, seed='both1')
    src2 = tmp_path / 'from-dave.bin'
    d2 = make_file(str(src2), 2 * MiB + 7, seed='both2')
    try:
        r.wait_ready()
        shutil.copyfile(str(src1), os.path.join(
            outdir(a, 'carol@localhost'), src1.name))
        t0 = time.monotonic()
        rc, res = peer_send(prosody, 'dave', 'alice', str(src2),
                            method='auto', timeout=XFER_TIMEOUT)
        out = r.results(timeout=XFER_TIMEOUT)
    finally:
        r.stop()
    assert rc == 0 and res['ok'], (res, diag(a))
    assert out and out[0]['ok'] and out[0]['md5'] == d1, (out, diag(a, r))
    wait_inbox_name(a, 'dave@localhost', src2.name, others=(r,))
    assert md5_file(os.path.join(a.inbox('dave@localhost'), src2.name)) \
        == d2
    x = wait_out_terminal(a, os.path.join(a.outbox('carol@localhost'),
                                          src1.name))
    assert x['state'] == 'sent', x
    assert time.monotonic() - t0 < XFER_TIMEOUT
