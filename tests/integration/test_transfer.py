"""End-to-end transfer tests: two real xmppfs mounts through a real Prosody.

Every test mounts a fresh pair (alice sends to bob unless stated) with the
`xmppfs` fixture against the session's `prosody` (conftest.py) and copies
files with the tools people use (cp, cp -r, cp -u, rsync, touch, rm).
What is checked is the contract of DESIGN.md:

- the stream methods: S5B direct, S5B through the server's proxy65 (sender
  with s5b_host=none), IBB (sender with methods=ibb), 0 B .. 100 MiB;
- the receiver's inbox shows only complete, verified files (polled while
  the transfer runs), MD5 equal to the source;
- the sender's xattrs (state, progress, peer, method, error) and the
  status file on both sides;
- reject paths (accept=none, max_size, a sender outside the roster),
  store-and-forward to an offline contact, re-send semantics (cp -u and
  rsync send nothing new, touch sends again and the receiver keeps both
  copies), names with spaces and non-ASCII characters, and cancelling an
  IBB transfer by deleting the outbox file.

Every wait is bounded. Run:
    /usr/bin/python3 -m pytest -q tests/integration/test_transfer.py
(XMPPFS_BIN=... to pick a binary).
"""

import errno
import json
import os
import subprocess
import time

import pytest

from xfsutil import make_file, md5_file, tail, wait_for

KiB = 1024
MiB = 1024 * 1024

ALICE = 'alice@localhost'
BOB = 'bob@localhost'

# Sender options that select a stream method, and the method the sender's
# user.xmppfs.method must then report.
METHOD_OPTS = {
    's5b-direct': {},
    's5b-proxy': {'s5b_host': 'none'},
    'ibb': {'methods': 'ibb'},
}
# The big size per method: IBB is base64 in iqs, keep its time down.
BIG = {'s5b-direct': 100 * MiB, 's5b-proxy': 100 * MiB, 'ibb': 8 * MiB}

TERMINAL = ('sent', 'rejected', 'failed', 'cancelled')
XFER_TIMEOUT = 60


# ---------------------------------------------------------------- helpers

def run(*args, **kw):
    return subprocess.run(list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120, **kw)


def diag(*mounts, lines=25):
    """Log tails of mounts, for assertion messages."""
    out = []
    for m in mounts:
        out.append('--- %s (%s) log tail:\n%s'
                   % (m.jid, m.log_path, tail(m.log_path, lines)))
    return '\n'.join(out)


def xattr(m, path, name):
    try:
        return os.getxattr(path, 'user.xmppfs.' + name).decode()
    except OSError as e:
        if e.errno == errno.ENODATA:
            return ''
        raise


def xattrs(m, path):
    return dict((k, xattr(m, path, k))
                for k in ('state', 'progress', 'error', 'peer', 'method'))


def outdir(m, jid):
    """outbox/<jid>/ of mount m; made with mkdir if the roster has not
    listed it (yet)."""
    d = m.outbox(jid)
    try:
        os.mkdir(d)
    except FileExistsError:
        pass
    return d


def wait_state(m, path, want, timeout=XFER_TIMEOUT, others=()):
    """Wait until outbox file `path` of m is in state `want`. Fails at once
    when it reaches a different terminal state."""
    last = {}

    def check():
        last.update(xattrs(m, path))
        st = last['state']
        if st == want:
            return True
        if st in TERMINAL and st != want:
            # Give a just-touched file a moment: a terminal state other than
            # `want` that persists is a failure.
            return None
        return False

    deadline = time.monotonic() + timeout
    bad_since = None
    while True:
        r = check()
        if r:
            return last
        now = time.monotonic()
        if r is None:
            bad_since = bad_since or now
            if now - bad_since > 1.0:
                pytest.fail('%s: state %r, want %r (xattrs %r)\n%s'
                            % (path, last['state'], want, last,
                               diag(m, *others)))
        else:
            bad_since = None
        if now > deadline:
            pytest.fail('%s: still %r after %ss, want %r (xattrs %r)\n%s'
                        % (path, last.get('state'), timeout, want, last,
                           diag(m, *others)))
        time.sleep(0.05)


def inbox_files(m, sender=None):
    """Names in m's inbox/<sender>/ (all senders: {sender: [names]})."""
    if sender is not None:
        try:
            return sorted(os.listdir(m.inbox(sender)))
        except FileNotFoundError:
            return []
    out = {}
    try:
        senders = os.listdir(m.inbox())
    except FileNotFoundError:
        return out
    for s in senders:
        try:
            out[s] = sorted(os.listdir(os.path.join(m.inbox(), s)))
        except FileNotFoundError:
            out[s] = []
    return out


def wait_inbox(m, sender, names, timeout=XFER_TIMEOUT, others=(),
               watch=None):
    """Wait until all `names` are in m's inbox/<sender>/. `watch` is called
    on every poll (for the partial-visibility check)."""
    names = set(names)

    def have():
        if watch:
            watch()
        return names <= set(inbox_files(m, sender))
    try:
        wait_for(have, timeout, interval=0.02)
    except TimeoutError:
        pytest.fail('%s inbox/%s: have %r, want %r after %ss\n%s'
                    % (m.jid, sender, inbox_files(m, sender), sorted(names),
                       timeout, diag(m, *others)))


def _unescape(s):
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == '\\' and i + 1 < len(s):
            n = s[i + 1]
            out.append({'t': '\t', 'n': '\n', '\\': '\\'}.get(n, '\\' + n))
            i += 2
            continue
        out.append(c)
        i += 1
    return ''.join(out)


STATUS_COLS = ('dir', 'state', 'progress', 'size', 'method', 'jid', 'name',
               'error')


def status(m):
    """(header, rows) of m's status file; rows are dicts of STATUS_COLS
    with progress/size as ints and '-' kept as is."""
    with open(os.path.join(m.path, 'status'), encoding='utf-8') as f:
        text = f.read()
    lines = text.split('\n')
    assert lines and lines[0].startswith('# xmppfs '), text
    assert text.endswith('\n'), repr(text[-80:])
    rows = []
    for l in lines[1:]:
        if not l:
            continue
        f = l.split('\t')
        assert len(f) == len(STATUS_COLS), 'bad status line %r' % l
        r = dict(zip(STATUS_COLS, f))
        r['progress'] = int(r['progress'])
        r['size'] = int(r['size'])
        for k in ('jid', 'name', 'error'):
            r[k] = _unescape(r[k])
        rows.append(r)
    return lines[0], rows


def rows_for(m, name, dir=None):
    return [r for r in status(m)[1]
            if r['name'] == name and (dir is None or r['dir'] == dir)]


def cp(src, dst, *flags):
    run('cp', *flags, src, dst)


class InboxWatch:
    """Called on every poll while a transfer runs: every file listed in
    the receiver's inbox must be complete (its final size), never a
    partial under its final name."""

    def __init__(self, m, expected_sizes):
        self.m = m
        self.expected = dict(expected_sizes)   # (sender, name) -> size
        self.polls = 0
        self.seen = set()

    def __call__(self):
        self.polls += 1
        for sender, names in inbox_files(self.m).items():
            for n in names:
                p = os.path.join(self.m.inbox(), sender, n)
                try:
                    st = os.stat(p)
                except FileNotFoundError:
                    continue
                key = (sender, n)
                assert key in self.expected, \
                    'unexpected file %s in %s inbox' % (p, self.m.jid)
                assert st.st_size == self.expected[key], \
                    ('%s listed with %d bytes, final size %d: partial data '
                     'visible under the final name'
                     % (p, st.st_size, self.expected[key]))
                self.seen.add(key)


def pair(xmppfs, method='s5b-direct', sender='alice', receiver='bob',
         sopts=None, ropts=None):
    """Mount the receiver, then the sender with the options of `method`."""
    r = xmppfs(receiver, **(ropts or {}))
    o = dict(METHOD_OPTS[method])
    o.update(sopts or {})
    s = xmppfs(sender, **o)
    return s, r


def check_sent(s, path, size, method, to=BOB, others=()):
    x = wait_state(s, path, 'sent', others=others)
    assert x['method'] == method, (x, diag(s, *others))
    assert int(x['progress']) == size, x
    assert x['peer'].startswith(to + '/'), x
    assert os.stat(path).st_size == size
    return x


# ---------------------------------------------------------------- 1. matrix

MATRIX = [(m, s) for m in ('s5b-direct', 's5b-proxy', 'ibb')
          for s in (0, 1, MiB, BIG[m])]


def _size_id(s):
    if s >= MiB:
        return '%dMiB' % (s // MiB)
    return '%dB' % s


@pytest.mark.parametrize('method,size', MATRIX,
                         ids=['%s-%s' % (m, _size_id(s)) for m, s in MATRIX])
def test_matrix(xmppfs, tmp_path, method, size):
    """cp one file into alice's outbox/bob; it arrives complete with the
    same MD5, by the expected method; the inbox never lists a partial."""
    src = tmp_path / ('m-%s-%d.bin' % (method, size))
    digest = make_file(str(src), size, seed='%s%d' % (method, size))
    a, b = pair(xmppfs, method)
    dst = os.path.join(outdir(a, BOB), src.name)

    watch = InboxWatch(b, {(ALICE, src.name): size})
    proc = subprocess.Popen(['cp', str(src), outdir(a, BOB) + '/'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_inbox(b, ALICE, [src.name], others=(a,), watch=watch)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    got = os.path.join(b.inbox(ALICE), src.name)
    watch()
    assert inbox_files(b) == {ALICE: [src.name]}
    assert os.stat(got).st_size == size
    assert md5_file(got) == digest
    check_sent(a, dst, size, method, others=(b,))
    # The sender keeps the file listed, same size and content.
    assert os.listdir(outdir(a, BOB)) == [src.name]
    assert md5_file(dst) == digest
    assert watch.polls > 0
    # Both status files agree.
    r = rows_for(b, src.name, 'in')
    assert [(x['state'], x['progress'], x['size'], x['method'], x['jid'])
            for x in r] == [('received', size, size, method, ALICE)], r
    r = rows_for(a, src.name, 'out')
    assert [(x['state'], x['progress'], x['size'], x['method'], x['jid'])
            for x in r] == [('sent', size, size, method, BOB)], r


# ---------------------------------------------------------------- 2. several

def test_both_directions(xmppfs, tmp_path):
    """alice -> bob and bob -> alice at the same time."""
    a, b = pair(xmppfs)
    fa = tmp_path / 'from-alice.bin'
    fb = tmp_path / 'from-bob.bin'
    da = make_file(str(fa), 3 * MiB + 17, seed='fa')
    db = make_file(str(fb), 2 * MiB + 5, seed='fb')
    pa = subprocess.Popen(['cp', str(fa), outdir(a, BOB) + '/'])
    pb = subprocess.Popen(['cp', str(fb), outdir(b, ALICE) + '/'])
    assert pa.wait(60) == 0 and pb.wait(60) == 0
    wait_inbox(b, ALICE, [fa.name], others=(a,))
    wait_inbox(a, BOB, [fb.name], others=(b,))
    assert md5_file(os.path.join(b.inbox(ALICE), fa.name)) == da
    assert md5_file(os.path.join(a.inbox(BOB), fb.name)) == db
    check_sent(a, os.path.join(a.outbox(BOB), fa.name), 3 * MiB + 17,
               's5b-direct', to=BOB, others=(b,))
    check_sent(b, os.path.join(b.outbox(ALICE), fb.name), 2 * MiB + 5,
               's5b-direct', to=ALICE, others=(a,))
    assert inbox_files(b) == {ALICE: [fa.name]}
    assert inbox_files(a) == {BOB: [fb.name]}


def test_two_files_one_cp(xmppfs, tmp_path):
    """Two files in one cp command: both arrive, both sent."""
    a, b = pair(xmppfs)
    f1 = tmp_path / 'one.bin'
    f2 = tmp_path / 'two.bin'
    d1 = make_file(str(f1), 5 * MiB, seed='one')
    d2 = make_file(str(f2), 1 * MiB + 1, seed='two')
    run('cp', str(f1), str(f2), outdir(a, BOB) + '/')
    wait_inbox(b, ALICE, ['one.bin', 'two.bin'], others=(a,))
    assert md5_file(os.path.join(b.inbox(ALICE), 'one.bin')) == d1
    assert md5_file(os.path.join(b.inbox(ALICE), 'two.bin')) == d2
    check_sent(a, os.path.join(a.outbox(BOB), 'one.bin'), 5 * MiB,
               's5b-direct', others=(b,))
    check_sent(a, os.path.join(a.outbox(BOB), 'two.bin'), MiB + 1,
               's5b-direct', others=(b,))
    assert inbox_files(b) == {ALICE: ['one.bin', 'two.bin']}


@pytest.mark.parametrize('method', ['s5b-direct', 's5b-proxy', 'ibb'])
def test_twenty_files_cp_r(xmppfs, tmp_path, method):
    """20 small files copied with one `cp -r dir/. outbox/bob/`: all
    arrive (through the proxy: more than its 5 streams per peer), all
    'sent', nothing else in the inbox."""
    srcdir = tmp_path / 'many'
    srcdir.mkdir()
    digests = {}
    for i in range(20):
        name = 'f%02d.dat' % i
        digests[name] = (make_file(str(srcdir / name), 100 + i * 997,
                                   seed='many%d' % i), 100 + i * 997)
    a, b = pair(xmppfs, method)
    watch = InboxWatch(b, dict(((ALICE, n), s)
                               for n, (d, s) in digests.items()))
    run('cp', '-r', str(srcdir) + '/.', outdir(a, BOB) + '/')
    wait_inbox(b, ALICE, digests, others=(a,), watch=watch)
    assert inbox_files(b) == {ALICE: sorted(digests)}
    for name, (d, size) in sorted(digests.items()):
        assert md5_file(os.path.join(b.inbox(ALICE), name)) == d, name
        check_sent(a, os.path.join(a.outbox(BOB), name), size, method,
                   others=(b,))


# ---------------------------------------------------------------- 3. rejects

def assert_nothing_received(b, name=None):
    files = inbox_files(b)
    assert all(not v for v in files.values()), files
    rows = [r for r in status(b)[1] if r['dir'] == 'in'
            and r['state'] in ('receiving', 'received')]
    assert rows == [], rows


def test_reject_accept_none(xmppfs, tmp_path):
    src = tmp_path / 'unwanted.txt'
    src.write_bytes(b'x' * 3000)
    a, b = pair(xmppfs, ropts={'accept': 'none'})
    cp(str(src), outdir(a, BOB) + '/')
    dst = os.path.join(a.outbox(BOB), src.name)
    x = wait_state(a, dst, 'rejected', others=(b,))
    assert x['error'].strip() != '', x
    # Nothing received, now or a moment later; the file stays listed with
    # its state and error (nothing deleted behind the user's back).
    time.sleep(1.0)
    assert_nothing_received(b)
    assert os.listdir(a.outbox(BOB)) == [src.name]
    assert xattr(a, dst, 'state') == 'rejected'
    assert xattr(a, dst, 'error').strip() != ''
    r = rows_for(a, src.name, 'out')
    assert [x['state'] for x in r] == ['rejected'], r
    assert r[0]['error'] not in ('', '-'), r


def test_reject_max_size(xmppfs, tmp_path):
    """max_size=1000: 2000 bytes rejected; 500 and exactly 1000 arrive."""
    a, b = pair(xmppfs, ropts={'max_size': '1000'})
    d = outdir(a, BOB)
    for n, size in (('big.bin', 2000), ('small.bin', 500),
                    ('edge.bin', 1000)):
        make_file(str(tmp_path / n), size, seed=n)
    cp(str(tmp_path / 'big.bin'), d + '/')
    x = wait_state(a, os.path.join(d, 'big.bin'), 'rejected', others=(b,))
    assert x['error'].strip() != '', x
    cp(str(tmp_path / 'small.bin'), d + '/')
    cp(str(tmp_path / 'edge.bin'), d + '/')
    wait_inbox(b, ALICE, ['small.bin', 'edge.bin'], others=(a,))
    for n in ('small.bin', 'edge.bin'):
        assert md5_file(os.path.join(b.inbox(ALICE), n)) == \
            md5_file(str(tmp_path / n))
        check_sent(a, os.path.join(d, n), os.path.getsize(tmp_path / n),
                   's5b-direct', others=(b,))
    assert inbox_files(b) == {ALICE: ['edge.bin', 'small.bin']}
    assert xattr(a, os.path.join(d, 'big.bin'), 'state') == 'rejected'


# A slixmpp helper (Debian's python3) that sets up or removes a one-way
# presence subscription between two accounts on the test server:
#   subscribe:   <who> subscribes to <to>'s presence, <to> approves it (so
#                <who>'s server delivers <to>'s presence, e.g. of its xmppfs
#                resource); <to> does not subscribe back.
#   unsubscribe: both remove each other from their rosters.
_ROSTER_HELPER = r"""
import asyncio, json, sys
import slixmpp
cfg = json.loads(sys.argv[1])

class C(slixmpp.ClientXMPP):
    def __init__(self, jid, pw, authorize):
        super().__init__(jid + '/xfs-test-helper', pw)
        self.ca_certs = cfg['cafile']
        self.auto_authorize = authorize
        self.auto_subscribe = False
        self.up = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('presence_subscribed',
                               lambda p: self.subscribed.set())

    async def start(self, _):
        await self.get_roster(timeout=10)
        self.send_presence(ppriority=-1)
        self.up.set()

async def main():
    host, port = cfg['server'].rsplit(':', 1)
    who = C(cfg['who'], cfg['who_pw'], None)
    to = C(cfg['to'], cfg['to_pw'], True)
    for c in (who, to):
        c.connect(address=(host, int(port)))
    await asyncio.wait_for(asyncio.gather(who.up.wait(), to.up.wait()), 15)
    if cfg['mode'] == 'subscribe':
        who.send_presence(pto=cfg['to'], ptype='subscribe')
        await asyncio.wait_for(who.subscribed.wait(), 15)
    else:
        for c, other in ((who, cfg['to']), (to, cfg['who'])):
            try:
                await c.update_roster(other, subscription='remove',
                                      timeout=10)
            except Exception as e:
                print('remove %s: %r' % (other, e), file=sys.stderr)
    await asyncio.sleep(0.3)
    for c in (who, to):
        c.disconnect()
    await asyncio.sleep(0.3)
    print('ok')

asyncio.run(main())
"""


def roster_helper(prosody, mode, who, to):
    cfg = {'mode': mode, 'server': prosody.server, 'cafile': prosody.cafile,
           'who': prosody.jid(who), 'who_pw': prosody.password(who),
           'to': prosody.jid(to), 'to_pw': prosody.password(to)}
    r = subprocess.run(['/usr/bin/python3', '-c', _ROSTER_HELPER,
                        json.dumps(cfg)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == b'ok', \
        ('roster helper %s %s->%s failed: %s %s'
         % (mode, who, to, r.stdout, r.stderr.decode(errors='replace')))


def test_reject_stranger(xmppfs, prosody, tmp_path):
    """eve is not in the shared roster group: bob (accept=roster, the
    default) rejects her offer.

    eve can only offer once she sees bob's xmppfs resource, which takes a
    presence subscription approved by bob. Until then her file waits.
    Then (helper client) eve subscribes to bob and bob approves: eve is in
    bob's roster with subscription 'from' (she sees him; he has no
    subscription to her, she is no roster contact of his in the sense of
    accept=roster), her xmppfs offers, and bob's xmppfs must reject it."""
    src = tmp_path / 'from-eve.txt'
    src.write_bytes(b'hello from eve\n' * 100)
    b = xmppfs('bob')
    e = xmppfs('eve')
    os.mkdir(e.outbox(BOB))
    cp(str(src), e.outbox(BOB) + '/')
    dst = os.path.join(e.outbox(BOB), src.name)
    wait_state(e, dst, 'waiting', timeout=10, others=(b,))
    time.sleep(1.0)
    assert xattr(e, dst, 'state') == 'waiting', (xattrs(e, dst), diag(e, b))
    assert_nothing_received(b)
    try:
        roster_helper(prosody, 'subscribe', 'eve', 'bob')
        x = wait_state(e, dst, 'rejected', timeout=30, others=(b,))
        assert x['error'].strip() != '', x
        assert x['peer'].startswith(BOB + '/'), x
        time.sleep(0.5)
        assert_nothing_received(b)
        assert xattr(e, dst, 'state') == 'rejected'
    finally:
        roster_helper(prosody, 'unsubscribe', 'eve', 'bob')


# ---------------------------------------------------------------- 4. waiting

def test_store_and_forward(xmppfs, tmp_path):
    """bob offline: the file waits (not an error); bob mounts: it goes."""
    src = tmp_path / 'later.bin'
    digest = make_file(str(src), 256 * KiB + 3, seed='later')
    a = xmppfs('alice')
    d = outdir(a, BOB)
    cp(str(src), d + '/')
    dst = os.path.join(d, src.name)
    wait_state(a, dst, 'waiting', timeout=10)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        x = xattrs(a, dst)
        assert x['state'] == 'waiting', (x, diag(a))
        time.sleep(0.1)
    b = xmppfs('bob')
    wait_inbox(b, ALICE, [src.name], others=(a,))
    assert md5_file(os.path.join(b.inbox(ALICE), src.name)) == digest
    check_sent(a, dst, 256 * KiB + 3, 's5b-direct', others=(b,))


# ---------------------------------------------------------------- 5. resend

@pytest.mark.parametrize('tool', ['cp', 'rsync'])
def test_resend_semantics(xmppfs, tmp_path, tool):
    """After 'sent', the same cp -u / rsync -a sends nothing; touch sends
    again and bob keeps both copies ('report (2).txt')."""
    src = tmp_path / 'report.txt'
    digest = make_file(str(src), 40 * KiB + 1, seed='report')
    a, b = pair(xmppfs)
    d = outdir(a, BOB)
    dst = os.path.join(d, src.name)
    if tool == 'cp':
        first, again = ['cp', str(src), d + '/'], \
            ['cp', '-u', str(src), d + '/']
    else:
        first = again = ['rsync', '-a', str(src), d + '/']
    run(*first)
    wait_inbox(b, ALICE, [src.name], others=(a,))
    check_sent(a, dst, 40 * KiB + 1, 's5b-direct', others=(b,))
    st0 = os.stat(dst)

    run(*again)
    # Longer than settle_ms (200) plus an offer round trip.
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        assert xattr(a, dst, 'state') == 'sent', (xattrs(a, dst), diag(a))
        assert inbox_files(b) == {ALICE: [src.name]}
        time.sleep(0.1)
    assert os.stat(dst).st_mtime_ns == st0.st_mtime_ns
    assert len(rows_for(b, src.name, 'in')) == 1, status(b)
    assert len(rows_for(a, src.name, 'out')) == 1, status(a)

    time.sleep(0.02)   # make sure touch gives a different mtime
    run('touch', dst)
    wait_inbox(b, ALICE, [src.name, 'report (2).txt'], others=(a,))
    check_sent(a, dst, 40 * KiB + 1, 's5b-direct', others=(b,))
    assert inbox_files(b) == {ALICE: ['report (2).txt', src.name]}
    for n in (src.name, 'report (2).txt'):
        assert md5_file(os.path.join(b.inbox(ALICE), n)) == digest


# ---------------------------------------------------------------- 6. names

def test_unicode_name(xmppfs, tmp_path):
    name = 'résumé final.pdf'
    src = tmp_path / name
    digest = make_file(str(src), 12345, seed='resume')
    a, b = pair(xmppfs)
    cp(str(src), outdir(a, BOB) + '/')
    wait_inbox(b, ALICE, [name], others=(a,))
    assert inbox_files(b) == {ALICE: [name]}
    assert md5_file(os.path.join(b.inbox(ALICE), name)) == digest
    check_sent(a, os.path.join(a.outbox(BOB), name), 12345, 's5b-direct',
               others=(b,))
    assert [r['name'] for r in status(b)[1] if r['dir'] == 'in'] == [name]


# ---------------------------------------------------------------- 7. cancel

def test_delete_cancels_ibb(xmppfs, tmp_path):
    """rm of an outbox file during a slow IBB transfer cancels it: nothing
    arrives, the receiver forgets the transfer, the sender keeps working."""
    size = 30 * MiB
    src = tmp_path / 'huge.bin'
    make_file(str(src), size, seed='huge')
    a, b = pair(xmppfs, 'ibb')
    d = outdir(a, BOB)
    cp(str(src), d + '/')
    dst = os.path.join(d, src.name)

    def sending():
        x = xattrs(a, dst)
        assert x['state'] not in TERMINAL, (x, diag(a, b))
        return x['state'] == 'sending' and int(x['progress']) > 0
    wait_for(sending, 30, msg='IBB transfer of %s started' % dst)
    prog = int(xattr(a, dst, 'progress'))
    assert prog < size, 'IBB finished before it could be cancelled'
    os.unlink(dst)
    t_rm = time.monotonic()
    assert src.name not in os.listdir(d)
    with pytest.raises(FileNotFoundError):
        os.stat(dst)

    # The receiver notices (IBB close) and never shows the file.
    def receiver_done():
        assert inbox_files(b, ALICE) == [], inbox_files(b)
        rs = rows_for(b, src.name, 'in')
        return all(r['state'] not in ('receiving', 'received') for r in rs)
    try:
        wait_for(receiver_done, 30, interval=0.1)
    except TimeoutError:
        pytest.fail('bob still lists the cancelled transfer as receiving '
                    '%.1fs after rm: %r\n%s' % (time.monotonic() - t_rm,
                                                rows_for(b, src.name),
                                                diag(a, b)))
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        assert inbox_files(b, ALICE) == [], inbox_files(b)
        time.sleep(0.1)
    # Forgotten: at most a 'cancelled' line remains in the status file.
    assert [r['state'] for r in rows_for(a, src.name, 'out')] in \
        ([], ['cancelled']), status(a)

    # The sender still works.
    small = tmp_path / 'after.txt'
    dg = make_file(str(small), 2000, seed='after')
    cp(str(small), d + '/')
    wait_inbox(b, ALICE, ['after.txt'], others=(a,))
    assert md5_file(os.path.join(b.inbox(ALICE), 'after.txt')) == dg
    check_sent(a, os.path.join(d, 'after.txt'), 2000, 'ibb', others=(b,))
    assert inbox_files(b) == {ALICE: ['after.txt']}


# ---------------------------------------------------------------- 8. status

def test_status_both_sides(xmppfs, tmp_path):
    """Both status files list both transfers with the right columns."""
    a, b = pair(xmppfs)
    fa = tmp_path / 'a2b.bin'
    fb = tmp_path / 'b2a.bin'
    make_file(str(fa), MiB + 7, seed='a2b')
    make_file(str(fb), 300 * KiB, seed='b2a')
    cp(str(fa), outdir(a, BOB) + '/')
    cp(str(fb), outdir(b, ALICE) + '/')
    wait_inbox(b, ALICE, [fa.name], others=(a,))
    wait_inbox(a, BOB, [fb.name], others=(b,))
    check_sent(a, os.path.join(a.outbox(BOB), fa.name), MiB + 7,
               's5b-direct', to=BOB, others=(b,))
    check_sent(b, os.path.join(b.outbox(ALICE), fb.name), 300 * KiB,
               's5b-direct', to=ALICE, others=(a,))

    for m, me, peer, out_name, out_size, in_name, in_size in (
            (a, ALICE, BOB, fa.name, MiB + 7, fb.name, 300 * KiB),
            (b, BOB, ALICE, fb.name, 300 * KiB, fa.name, MiB + 7)):
        header, rows = status(m)
        hf = header.split(' ')
        assert hf[:2] == ['#', 'xmppfs'] and len(hf) == 4, header
        assert hf[2].split('/')[0] == me, header
        assert hf[3] == 'online', header
        got = sorted((r['dir'], r['state'], r['progress'], r['size'],
                      r['method'], r['jid'], r['name'], r['error'])
                     for r in rows)
        want = sorted([
            ('out', 'sent', out_size, out_size, 's5b-direct', peer,
             out_name, '-'),
            ('in', 'received', in_size, in_size, 's5b-direct', peer,
             in_name, '-')])
        assert got == want, (m.jid, header, rows)
