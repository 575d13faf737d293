"""Interop: xmppfs against libpurple 2.14 (Pidgin's library), both ways.

tests/peer/purplepeer.c is a headless libpurple client (prpl-jabber, glib
main loop, pinned server certificate, loopback-only network settings). It
is built here with tests/peer/build-purplepeer.sh into the session's tmp
dir; the module skips when libpurple-dev is not installed or the build
fails. What libpurple does as an SI peer is in shared INTEROP.md §6: no
hash in its offers, IBB blocks read as base64 length, never acks the IBB
<close/>, S5B->IBB on the same SID, 0-byte files fail in libpurple itself.

- xmppfs sends (alice's mount, cp into outbox/bob@localhost/) to
  `purplepeer receive` logged in as bob/purple: S5B direct (default), S5B
  through the server's proxy65 (s5b_host=none), IBB (methods=ibb);
- purplepeer sends (as bob/purple) to alice's mount: libpurple offers
  bytestreams+ibb and lists its own 127.0.0.1 listener first, so xmppfs
  connects directly (s5b-direct); a mount with methods=ibb makes
  libpurple send in-band (its 3,070-byte blocks, unacked close);
- 0-byte files both ways: libpurple fails them itself; xmppfs must end in
  a clear terminal state and keep running.

Sizes 1 B and 1 MiB. Checked: MD5 of what arrived, the peer's JSON line,
the xmppfs xattrs (outbox: state, method, progress, peer; inbox: state,
method, peer) and the inbox listing.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_interop_libpurple.py
"""

import json
import os
import shutil
import subprocess
import time

import pytest

import xfsutil
from xfsutil import (inbox_listing, make_file, md5_file, read_status, tail,
                     wait_for, xattr_str)

MiB = 1024 * 1024
ALICE = 'alice@localhost'
BOB = 'bob@localhost'
XFER_TIMEOUT = 40
PEER_DIR = os.path.join(os.path.dirname(xfsutil.HERE), 'peer')
BUILD_SCRIPT = os.path.join(PEER_DIR, 'build-purplepeer.sh')

SEND_OPTS = {
    's5b-direct': {},
    's5b-proxy': {'s5b_host': 'none'},
    'ibb': {'methods': 'ibb'},
}
TERMINAL = ('sent', 'rejected', 'failed', 'cancelled')


def _sid(s):
    return '%dMiB' % (s // MiB) if s >= MiB else '%dB' % s


# ---------------------------------------------------------------- the peer

@pytest.fixture(scope='session')
def purplepeer(tmp_path_factory):
    """Path of a freshly built purplepeer binary (or skip)."""
    if not shutil.which('pkg-config') or subprocess.run(
            ['pkg-config', '--exists', 'purple', 'glib-2.0']).returncode:
        pytest.skip('libpurple-dev (pkg-config purple) is not installed')
    if not shutil.which(os.environ.get('CC', 'cc')):
        pytest.skip('no C compiler to build purplepeer')
    out = str(tmp_path_factory.mktemp('purplepeer') / 'purplepeer')
    r = subprocess.run(['sh', BUILD_SCRIPT, out], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    if r.returncode != 0 or not os.access(out, os.X_OK):
        pytest.skip('purplepeer did not build: %s'
                    % r.stdout.decode(errors='replace')[-1500:])
    return out


_seq = [0]


def purple_argv(binary, prosody, name, resource, workdir):
    _seq[0] += 1
    userdir = os.path.join(workdir, 'purple-home-%s-%d' % (resource, _seq[0]))
    jid = prosody.jid(name)
    return [binary, '--jid', '%s/%s' % (jid, resource),
            '--password', prosody.password(jid), '--port', str(prosody.port),
            '--userdir', userdir, '--cert', prosody.certfile,
            '--proxies', prosody.proxy_jid, '--debug']


class PurpleReceiver:
    """A `purplepeer receive` process. results() -> list of JSON dicts."""

    def __init__(self, binary, prosody, name, workdir, count=1,
                 timeout=XFER_TIMEOUT, resource='purple'):
        self.dir = os.path.join(workdir, 'purple-in')
        os.makedirs(self.dir, exist_ok=True)
        self.ready_file = os.path.join(workdir, '.ready-purple-%s' % resource)
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        self.timeout = timeout
        self.log_path = os.path.join(workdir, 'purplepeer-recv.log')
        argv = purple_argv(binary, prosody, name, resource, workdir) + [
            '--ready-file', self.ready_file,
            'receive', '--dir', self.dir, '--count', str(count),
            '--timeout', str(timeout)]
        self._log = open(self.log_path, 'ab')
        self._log.write(('=== %s\n' % ' '.join(argv)).encode())
        self._log.flush()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        self.jid = None
        self._results = None

    def wait_ready(self, timeout=20):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError('purplepeer receive exited early (%s): %s'
                                   % (self.proc.returncode,
                                      tail(self.log_path, 60)))
            try:
                with open(self.ready_file) as f:
                    return f.read().strip() or None
            except OSError:
                return None
        self.jid = wait_for(ready, timeout, msg='purplepeer receiver ready')
        return self.jid

    def results(self, timeout=None):
        if self._results is None:
            try:
                out, _ = self.proc.communicate(
                    timeout=timeout or self.timeout + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            self._log.close()
            self._results = [json.loads(l) for l in
                             out.decode().splitlines() if l.strip()]
        return self._results

    def stop(self):
        xfsutil.stop_pid(self.proc, 3)
        if not self._log.closed:
            self._log.close()


def purple_send(binary, prosody, name, to, file, workdir,
                timeout=XFER_TIMEOUT, resource='purple'):
    """Run `purplepeer send` to completion -> (returncode, last JSON dict,
    log path)."""
    log_path = os.path.join(workdir, 'purplepeer-send.log')
    argv = purple_argv(binary, prosody, name, resource, workdir) + [
        'send', '--to', to, '--file', file, '--timeout', str(timeout)]
    with open(log_path, 'ab') as lf:
        lf.write(('=== %s\n' % ' '.join(argv)).encode())
        lf.flush()
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=lf,
                               stdin=subprocess.DEVNULL,
                               timeout=timeout + 15)
        except subprocess.TimeoutExpired as e:
            return -1, {'ok': False, 'error': 'purplepeer hung: %r' % e}, \
                log_path
    lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
    if lines:
        return r.returncode, json.loads(lines[-1]), log_path
    return r.returncode, {'ok': False, 'error': 'no output'}, log_path


# ---------------------------------------------------------------- helpers

def diag(*things, lines=40):
    out = []
    for t in things:
        if isinstance(t, xfsutil.Mount):
            out.append('--- %s log (%s):\n%s' % (t.jid, t.log_path,
                                                 tail(t.log_path, lines)))
        elif isinstance(t, PurpleReceiver):
            out.append('--- purplepeer receiver log (%s):\n%s'
                       % (t.log_path, tail(t.log_path, lines)))
        elif isinstance(t, str) and os.path.exists(t):
            out.append('--- %s:\n%s' % (t, tail(t, lines)))
    return '\n'.join(out)


def outdir(m, jid):
    d = m.outbox(jid)
    os.makedirs(d, exist_ok=True)
    return d


def out_xattrs(path):
    return dict((k, xattr_str(path, k))
                for k in ('state', 'progress', 'error', 'peer', 'method'))


def wait_out_terminal(m, path, timeout=XFER_TIMEOUT, others=()):
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


def assert_alive(m):
    assert m.running() and m.mounted(), diag(m)
    assert 'AddressSanitizer' not in m.log_text(), diag(m, lines=80)
    os.listdir(m.path)          # the mount still answers


# ------------------------------------------------ xmppfs sends, libpurple gets

X2P = [(m, s) for m in ('s5b-direct', 's5b-proxy', 'ibb') for s in (1, MiB)]


def xmppfs_to_purple(purplepeer, prosody, xmppfs, tmp_path, method, size):
    src = tmp_path / ('x2p-%s-%d.bin' % (method, size))
    digest = make_file(str(src), size, seed='lp-x2p%s%d' % (method, size))
    r = PurpleReceiver(purplepeer, prosody, 'bob', str(tmp_path))
    a = None
    try:
        rjid = r.wait_ready()
        a = xmppfs('alice', **SEND_OPTS.get(method, {}))
        dst = os.path.join(outdir(a, BOB), src.name)
        shutil.copyfile(str(src), dst)
        x = wait_out_terminal(a, dst, others=(r,))
        out = r.results(timeout=XFER_TIMEOUT)
    finally:
        r.stop()
    return a, dst, x, out, digest, r, rjid, src.name


@pytest.mark.parametrize('method,size', X2P,
                         ids=['%s-%s' % (m, _sid(s)) for m, s in X2P])
def test_xmppfs_to_libpurple(purplepeer, prosody, xmppfs, tmp_path, method,
                             size):
    a, dst, x, out, digest, r, rjid, name = xmppfs_to_purple(
        purplepeer, prosody, xmppfs, tmp_path, method, size)
    assert x['state'] == 'sent', (x, diag(a, r))
    assert x['method'] == method, (x, diag(a, r))
    assert int(x['progress']) == size, x
    assert x['peer'] == rjid, (x, rjid)
    assert x['error'] == '', x
    assert md5_file(dst) == digest
    assert len(out) == 1, (out, diag(a, r))
    got = out[0]
    assert got['ok'], (got, diag(a, r))
    assert (got['name'], got['size'], got['expected'], got['md5']) == \
        (name, size, size, digest), got
    assert got['from'] == a.jid + '/xmppfs', got
    assert os.listdir(r.dir) == [name]
    assert md5_file(os.path.join(r.dir, name)) == digest
    rows = [w for w in read_status(a.path)[1] if w['name'] == name]
    assert [(w['dir'], w['state'], w['progress'], w['method'])
            for w in rows] == [('out', 'sent', size, method)], rows
    assert_alive(a)


def test_xmppfs_to_libpurple_zero_bytes(purplepeer, prosody, xmppfs,
                                        tmp_path):
    """libpurple cannot take a 0-byte file (INTEROP §6: as S5B receiver an
    immediate EOF counts as a cancel). Whatever it does, xmppfs must reach a
    terminal state within the timeout, name it, and keep running."""
    a, dst, x, out, digest, r, rjid, name = xmppfs_to_purple(
        purplepeer, prosody, xmppfs, tmp_path, 's5b-direct', 0)
    assert x['state'] in TERMINAL, (x, diag(a, r))
    if x['state'] != 'sent':
        assert x['error'], ('a failed transfer names its reason', x)
    # libpurple answers, takes the bytestream, and calls the immediate EOF
    # a cancel by the sender: it reports one failed file, no crash.
    assert len(out) == 1 and out[0]['name'] == name, (out, diag(a, r))
    assert_alive(a)
    # report what libpurple made of it (for the record, not a pass/fail)
    print('0-byte xmppfs->libpurple: xmppfs %r, libpurple %r' % (x, out))


# ------------------------------------------------ libpurple sends, xmppfs gets

def purple_to_xmppfs(purplepeer, prosody, xmppfs, tmp_path, size,
                     mount_opts=None, timeout=XFER_TIMEOUT):
    a = xmppfs('alice', **(mount_opts or {}))
    src = tmp_path / ('p2x-%d.bin' % size)
    digest = make_file(str(src), size, seed='lp-p2x%d' % size)
    rc, res, plog = purple_send(purplepeer, prosody, 'bob',
                                ALICE + '/xmppfs', str(src), str(tmp_path),
                                timeout=timeout)
    return a, src.name, digest, rc, res, plog


def wait_inbox(a, sender, name, others=()):
    try:
        wait_for(lambda: name in inbox_listing(a).get(sender, []),
                 XFER_TIMEOUT, interval=0.05)
    except TimeoutError:
        pytest.fail('%r not in inbox/%s (inbox %r, status %r)\n%s'
                    % (name, sender, inbox_listing(a),
                       read_status(a.path)[1], diag(a, *others)))


# alice's mount options -> the method xmppfs should end up with. libpurple
# offers bytestreams and IBB and lists its 127.0.0.1 listener first; a mount
# with methods=ibb answers the offer with IBB, so libpurple sends in-band
# (3,070-byte blocks under a 4096 block-size, and a <close/> it never
# waits on).
P2X = [('default', s) for s in (1, MiB)] + [('ibb', s) for s in (1, MiB)]
P2X_OPTS = {'default': ({}, 's5b-direct'),
            'ibb': ({'methods': 'ibb'}, 'ibb')}


@pytest.mark.parametrize('mode,size', P2X,
                         ids=['%s-%s' % (m, _sid(s)) for m, s in P2X])
def test_libpurple_to_xmppfs(purplepeer, prosody, xmppfs, tmp_path, mode,
                             size):
    opts, method = P2X_OPTS[mode]
    a, name, digest, rc, res, plog = purple_to_xmppfs(
        purplepeer, prosody, xmppfs, tmp_path, size, mount_opts=opts)
    assert rc == 0 and res['ok'], (res, diag(a, plog))
    assert res['to'] == ALICE + '/xmppfs', res
    wait_inbox(a, BOB, name, others=(plog,))
    p = os.path.join(a.inbox(BOB), name)
    assert inbox_listing(a) == {BOB: [name]}, inbox_listing(a)
    assert os.stat(p).st_size == size
    assert md5_file(p) == digest
    xa = dict((k, xattr_str(p, k)) for k in ('state', 'method', 'peer'))
    assert xa == {'state': 'received', 'method': method,
                  'peer': BOB + '/purple'}, (xa, diag(a, plog))
    assert os.listdir(os.path.join(a.data_dir, 'partial')) == []
    assert_alive(a)


def test_libpurple_to_xmppfs_zero_bytes(purplepeer, prosody, xmppfs,
                                        tmp_path):
    """libpurple as sender never completes a 0-byte file (INTEROP §6): it
    opens the bytestream and then neither writes nor closes. xmppfs needs
    no data for a 0-byte offer: the empty file must show in the inbox,
    verified ('received'), while libpurple is still waiting (its own bug;
    purplepeer gives up after 12 s), and the mount keeps running."""
    a, name, digest, rc, res, plog = purple_to_xmppfs(
        purplepeer, prosody, xmppfs, tmp_path, 0, timeout=12)
    print('0-byte libpurple->xmppfs: purplepeer rc %s %r' % (rc, res))
    wait_inbox(a, BOB, name, others=(plog,))
    p = os.path.join(a.inbox(BOB), name)
    assert os.stat(p).st_size == 0
    xa = dict((k, xattr_str(p, k)) for k in ('state', 'method', 'peer'))
    assert xa['state'] == 'received' and xa['peer'] == BOB + '/purple', \
        (xa, diag(a, plog))
    assert inbox_listing(a) == {BOB: [name]}, inbox_listing(a)
    assert_alive(a)
