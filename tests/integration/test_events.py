"""Mount tests of /events: one JSON line per transfer state change, for
scripts (`tail -f MNT/events`, `while read -r l; do ...; done < MNT/events`).

Readers run as real processes: GNU tail -f (polls st_size once a second and
reads the new bytes), a Python reader doing blocking readline()s, bash's
`while read` (reads a chunk, lseek()s back to the end of the line) and cat.
Checked: every reader sees the lines of a change, in order, within a
bounded time; a new streaming reader sees only new events while tail shows
the last lines; several readers at once; a killed reader does not wedge the
mount; more blocked readers than the daemon allows get EAGAIN instead of
taking every FUSE thread; and, with a private Prosody, the lines of a real
transfer alice -> bob on both sides.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_events.py
(XMPPFS_BIN=... to pick a binary).
"""

import errno
import json
import os
import signal
import stat
import subprocess
import time

import pytest

from xfsutil import make_file, tail, wait_for

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
XFER_TIMEOUT = 60
# A line must reach a streaming reader this fast after the change, and
# tail -f (1 s poll + 1 s attribute cache) this fast.
STREAM_LAG = 3.0
TAIL_LAG = 5.0

PY_READER = r'''
import sys
f = open(sys.argv[1], 'rb')
while True:
    line = f.readline()
    if not line:
        print('EOF', flush=True)
        break
    sys.stdout.buffer.write(line)
    sys.stdout.flush()
'''

BASH_READER = 'while IFS= read -r l; do printf "%s\\n" "$l"; done < "$1"'


class Reader:
    """A reader process of MNT/events whose stdout goes to a file."""

    def __init__(self, kind, path, tmp, tag=''):
        self.kind = kind
        self.out = str(tmp / ('reader-%s%s.out' % (kind, tag)))
        argv = {
            'tail': ['tail', '-f', path],
            'python': ['/usr/bin/python3', '-u', '-c', PY_READER, path],
            'bash': ['bash', '-c', BASH_READER, 'reader', path],
            'cat': ['cat', path],
        }[kind]
        self._f = open(self.out, 'wb')
        self.proc = subprocess.Popen(argv, stdout=self._f,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def text(self):
        with open(self.out, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def events(self):
        """Parsed lines; blank lines skipped, anything else must parse."""
        out = []
        for ln in self.text().splitlines():
            if ln.strip():
                out.append(json.loads(ln))
        return out

    def states(self, name, dir=None):
        return [e['state'] for e in self.events()
                if e['name'] == name and (dir is None or e['dir'] == dir)]

    def wait_states(self, name, want, timeout, dir=None):
        """Wait until the states of `name` contain `want` as a subsequence,
        the last one being want[-1]; return them."""
        def ok():
            got = self.states(name, dir)
            it = iter(got)
            return got if all(w in it for w in want) else None
        try:
            return wait_for(ok, timeout, interval=0.05,
                            msg='%s reader: %s states %r, want %r'
                            % (self.kind, name, self.states(name, dir),
                               want))
        except TimeoutError as e:
            pytest.fail('%s\noutput:\n%s' % (e, self.text()[-3000:]))

    def alive(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        finally:
            self._f.close()


@pytest.fixture
def readers():
    """Factory for Reader processes; all are killed at the end of the test
    (before the mounts are unmounted)."""
    made = []

    def make(kind, path, tmp, tag=''):
        r = Reader(kind, path, tmp, tag)
        made.append(r)
        return r

    yield make
    for r in made:
        r.kill()


def events_path(m):
    return os.path.join(m.path, 'events')


def contact(m, jid=BOB):
    d = m.outbox(jid)
    if not os.path.isdir(d):
        os.mkdir(d)
    return d


def wait_state(m, path, want, timeout):
    return wait_for(lambda: m.state(path) == want, timeout,
                    msg='%s: state %r, want %r' % (path, m.state(path), want))


def errno_of(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


# ---------------------------------------------------------------- offline

@pytest.fixture
def mnt(xmppfs):
    return xmppfs('alice', offline=True, settle_ms=100)


def test_events_file(mnt):
    p = events_path(mnt)
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
    assert st.st_size > 0       # never 0, see fs_events.c
    assert errno_of(open, p, 'wb') == errno.EACCES
    assert errno_of(open, p, 'r+b') == errno.EACCES
    assert errno_of(os.unlink, p) == errno.EACCES
    assert errno_of(os.truncate, p, 0) == errno.EACCES
    assert errno_of(os.mkdir, p) == errno.EEXIST
    assert errno_of(os.rmdir, p) == errno.ENOTDIR
    assert errno_of(os.listdir, p) == errno.ENOTDIR
    # st_size grows by the bytes of each line, mtime is the last event
    d = contact(mnt)
    before = time.time()
    with open(os.path.join(d, 'a.txt'), 'wb') as f:
        f.write(b'hello')
    wait_for(lambda: os.stat(p).st_size > st.st_size, 3,
             msg='st_size of events did not grow')
    assert os.stat(p).st_mtime >= before - 1


def test_readers_see_changes_in_order(mnt, readers, tmp_path):
    """tail -f, a Python readline() loop, bash `while read` and cat at the
    same time all see the same lines, in order, promptly."""
    p = events_path(mnt)
    d = contact(mnt)
    # some history: a new streaming reader does not see it, tail does
    with open(os.path.join(d, 'old.txt'), 'wb') as f:
        f.write(b'old')
    wait_state(mnt, os.path.join(d, 'old.txt'), 'waiting', 5)
    rs = [readers(k, p, tmp_path) for k in ('tail', 'python', 'bash', 'cat')]
    time.sleep(1.0)   # all opened; streaming ones block at the end
    assert all(r.alive() for r in rs)
    rs[0].wait_states('old.txt', ['staged', 'waiting'], TAIL_LAG)

    names = ['n%d.bin' % i for i in range(5)] + ['sp ace \u00e9\u20ac.txt']
    t0 = time.monotonic()
    for n in names:
        with open(os.path.join(d, n), 'wb') as f:
            f.write(b'x' * 100)
    for r in rs:
        lag = STREAM_LAG if r.kind != 'tail' else TAIL_LAG
        for n in names:
            r.wait_states(n, ['staged', 'waiting'],
                          max(0.5, t0 + lag - time.monotonic()) + 1)
    for r in rs[1:]:
        assert r.states('old.txt') == [], (r.kind, r.text())
    # identical lines for the changes, in the same order, everywhere
    keys = [[(e['name'], e['state']) for e in r.events()
             if e['name'] != 'old.txt'] for r in rs]
    # Per file: staged then waiting. Across files the order of one file's
    # 'waiting' and the next one's 'staged' can swap, because FUSE sends
    # RELEASE after close(2) has already returned.
    assert sorted(keys[0]) == sorted(
        (n, s) for n in names for s in ('staged', 'waiting'))
    for n in names:
        assert [s for m, s in keys[0] if m == n] == ['staged', 'waiting']
    for k in keys[1:]:
        assert k == keys[0]
    e = [x for x in rs[1].events() if x['name'] == names[-1]][-1]
    assert e['dir'] == 'out' and e['jid'] == BOB and e['size'] == 100
    assert e['peer'] == '' and e['method'] == '' and e['error'] == ''
    assert e['time'].endswith('Z') and len(e['time']) == 24

    # more changes: delete, rename to hidden and back
    os.rename(os.path.join(d, 'n0.bin'), os.path.join(d, '.n0.bin'))
    os.rename(os.path.join(d, '.n0.bin'), os.path.join(d, 'n0.bin'))
    for r in rs:
        r.wait_states('.n0.bin', ['staged'], TAIL_LAG)
        r.wait_states('n0.bin', ['staged', 'waiting', 'waiting'], TAIL_LAG)


def test_tail_shows_last_lines(mnt, readers, tmp_path):
    """tail -n N prints the last N lines only (no filler, no repeats), and
    with fewer lines than N exactly the lines there are."""
    p = events_path(mnt)
    d = contact(mnt)
    out = subprocess.run(['tail', '-n', '5', p], stdout=subprocess.PIPE,
                         timeout=10).stdout
    assert out == b''
    with open(os.path.join(d, 'one'), 'wb') as f:
        f.write(b'1')
    wait_state(mnt, os.path.join(d, 'one'), 'waiting', 5)
    time.sleep(1.1)   # the attribute cache of st_size
    out = subprocess.run(['tail', '-n', '5', p], stdout=subprocess.PIPE,
                         timeout=10).stdout.decode()
    assert [json.loads(x)['state'] for x in out.splitlines()] == \
        ['staged', 'waiting'], out
    for i in range(30):
        with open(os.path.join(d, 'm%02d' % i), 'wb') as f:
            f.write(b'2')
    for i in range(30):  # RELEASEs come after close(2), in any order
        wait_state(mnt, os.path.join(d, 'm%02d' % i), 'waiting', 5)
    time.sleep(1.1)
    out = subprocess.run(['tail', '-n', '3', p], stdout=subprocess.PIPE,
                         timeout=10).stdout.decode()
    got = [(json.loads(x)['name'], json.loads(x)['state'])
           for x in out.splitlines()]
    # The last three state changes, whole lines, no repeats. Which files
    # they are depends on the order the kernel sent the RELEASEs (after
    # close(2) returned), so only their shape is fixed.
    assert len(got) == 3 and len(set(got)) == 3, out
    assert all(n.startswith('m') for n, _ in got), out
    assert got[-1][1] == 'waiting', out
    out = subprocess.run(['tail', '-n', '1000', p], stdout=subprocess.PIPE,
                         timeout=10).stdout.decode()
    assert len(out.splitlines()) == 62
    assert all(x.startswith('{"time":') for x in out.splitlines())


def test_nonblocking_and_seek_to_end(mnt):
    """O_NONBLOCK at the end gets EAGAIN; a reader that seeks to st_size
    blocks there and gets the next line."""
    p = events_path(mnt)
    d = contact(mnt)
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert errno_of(os.read, fd, 100) == errno.EAGAIN
    finally:
        os.close(fd)
    with open(p, 'rb', buffering=0) as f:
        f.seek(0, os.SEEK_END)
        pid = os.fork()
        if pid == 0:            # make a change while the parent blocks
            time.sleep(0.5)
            with open(os.path.join(d, 'later'), 'wb') as g:
                g.write(b'z')
            os._exit(0)
        t0 = time.monotonic()
        data = f.read(65536)
        os.waitpid(pid, 0)
    assert time.monotonic() - t0 >= 0.3
    e = json.loads(data.splitlines()[0])
    assert (e['name'], e['state']) == ('later', 'staged')


def test_killed_reader_does_not_wedge(mnt, readers, tmp_path):
    """A reader killed while its read blocks leaves within a second; the
    mount and the other readers carry on."""
    p = events_path(mnt)
    d = contact(mnt)
    keep = readers('python', p, tmp_path)
    victims = [readers('cat', p, tmp_path, str(i)) for i in range(3)]
    time.sleep(0.8)
    for v in victims:
        assert v.alive()
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        v = victims.pop()
        t0 = time.monotonic()
        v.kill(sig)
        assert time.monotonic() - t0 < 3.0, 'killed reader stuck (%s)' % sig
    t0 = time.monotonic()
    assert 'events' in os.listdir(mnt.path)
    assert time.monotonic() - t0 < 1.0
    with open(os.path.join(d, 'after-kill'), 'wb') as f:
        f.write(b'k')
    keep.wait_states('after-kill', ['staged', 'waiting'], STREAM_LAG)
    again = readers('bash', p, tmp_path)
    time.sleep(0.5)
    os.unlink(os.path.join(d, 'after-kill'))
    with open(os.path.join(d, 'after-kill-2'), 'wb') as f:
        f.write(b'k')
    again.wait_states('after-kill-2', ['staged', 'waiting'], STREAM_LAG)
    keep.wait_states('after-kill-2', ['staged', 'waiting'], STREAM_LAG)


def test_too_many_blocked_readers(mnt, readers, tmp_path):
    """More blocked readers than the daemon allows (12 of its 32 FUSE
    threads, main/main.c) get EAGAIN at once; the mount stays usable and
    the ones admitted keep streaming."""
    limit, n = 12, 20
    p = events_path(mnt)
    d = contact(mnt)
    rs = [readers('cat', p, tmp_path, str(i)) for i in range(n)]

    def settled():
        return sum(1 for r in rs if not r.alive()) >= n - limit
    wait_for(settled, 10, msg='readers over the limit did not fail')
    time.sleep(0.5)
    failed = [r for r in rs if not r.alive()]
    alive = [r for r in rs if r.alive()]
    assert len(alive) == limit and len(failed) == n - limit
    for r in failed:
        assert 'Resource temporarily unavailable' in r.text(), r.text()
    t0 = time.monotonic()
    assert sorted(os.listdir(mnt.path)) == ['events', 'inbox', 'outbox',
                                            'status']
    with open(os.path.join(d, 'busy'), 'wb') as f:
        f.write(b'b')
    assert open(os.path.join(d, 'busy'), 'rb').read() == b'b'
    assert time.monotonic() - t0 < 2.0
    for r in alive:
        r.wait_states('busy', ['staged', 'waiting'], STREAM_LAG)
    for r in alive:
        r.kill()
    # slots are free again
    late = readers('python', p, tmp_path, 'late')
    time.sleep(0.5)
    with open(os.path.join(d, 'busy2'), 'wb') as f:
        f.write(b'b')
    late.wait_states('busy2', ['staged', 'waiting'], STREAM_LAG)


def test_slow_reader_skips_lost_lines(mnt, tmp_path):
    """A streaming reader that falls more than the ring (256 KiB) behind
    continues at the oldest line still held: whole lines only."""
    p = events_path(mnt)
    d = contact(mnt)
    with open(p, 'rb') as f:
        with open(os.path.join(d, 'first'), 'wb') as g:
            g.write(b'1')
        assert json.loads(f.readline())['name'] == 'first'
        # 2000 lines of ~165 bytes: more than the ring
        for i in range(1000):
            with open(os.path.join(d, 'f%04d' % i), 'wb') as g:
                g.write(b'x')
        wait_state(mnt, os.path.join(d, 'f0999'), 'waiting', 30)
        n = 0
        while True:
            e = json.loads(f.readline())
            n += 1
            if (e['name'], e['state']) == ('f0999', 'waiting'):
                break
    assert 1000 < n < 2000, n


# ---------------------------------------------------------------- online

def test_transfer_events(xmppfs, readers, tmp_path):
    """alice -> bob over a private Prosody: alice's readers (tail -f and a
    Python readline loop) see waiting .. offered .. sending .. sent, bob's
    see receiving .. received, in order and promptly; then a reader killed
    mid-read does not stop the next transfer's lines."""
    b = xmppfs('bob')
    a = xmppfs('alice')
    ra = [readers('tail', events_path(a), tmp_path, 'a'),
          readers('python', events_path(a), tmp_path, 'a')]
    rb = [readers('tail', events_path(b), tmp_path, 'b'),
          readers('python', events_path(b), tmp_path, 'b')]
    victim = readers('cat', events_path(a), tmp_path, 'victim')
    time.sleep(1.0)
    src = tmp_path / 'report.bin'
    make_file(str(src), 300_000, seed=7)
    d = contact(a)
    subprocess.run(['cp', str(src), d + '/'], check=True, timeout=60)
    dst = os.path.join(d, 'report.bin')

    def diag():
        return '\n'.join('--- %s log:\n%s' % (m.jid, tail(m.log_path, 30))
                         for m in (a, b))
    try:
        wait_state(a, dst, 'sent', XFER_TIMEOUT)
    except TimeoutError as e:
        pytest.fail('%s\n%s' % (e, diag()))
    sent_at = time.monotonic()
    want_out = ['staged', 'waiting', 'offered', 'sending', 'sent']
    for r in ra:
        lag = TAIL_LAG if r.kind == 'tail' else STREAM_LAG
        got = r.wait_states('report.bin', want_out,
                            max(0.5, sent_at + lag - time.monotonic()) + 1,
                            dir='out')
        assert got[-1] == 'sent'
        assert 'failed' not in got and 'rejected' not in got, got
    e = [x for x in ra[1].events() if x['name'] == 'report.bin'][-1]
    assert e['state'] == 'sent' and e['dir'] == 'out' and e['jid'] == BOB
    assert e['peer'].startswith(BOB + '/') and e['size'] == 300_000
    assert e['progress'] == 300_000 and e['method'] in (
        's5b-direct', 's5b-proxy', 'ibb') and e['error'] == ''
    for r in rb:
        got = r.wait_states('report.bin', ['receiving', 'received'],
                            TAIL_LAG + 5, dir='in')
        assert got == ['receiving', 'received'], got
    e = [x for x in rb[1].events() if x['name'] == 'report.bin'][-1]
    assert e['dir'] == 'in' and e['jid'] == ALICE and e['size'] == 300_000
    assert e['peer'].startswith(ALICE + '/')
    # same lines on both alice readers
    assert [x['state'] for x in ra[0].events()
            if x['name'] == 'report.bin'] == \
        [x['state'] for x in ra[1].events() if x['name'] == 'report.bin']

    # kill a reader blocked mid-read; the mount carries on
    assert victim.alive()
    t0 = time.monotonic()
    victim.kill(signal.SIGKILL)
    assert time.monotonic() - t0 < 3.0
    assert 'events' in os.listdir(a.path)
    make_file(str(tmp_path / 'second.bin'), 1000, seed=8)
    subprocess.run(['cp', str(tmp_path / 'second.bin'), d + '/'],
                   check=True, timeout=60)
    try:
        wait_state(a, os.path.join(d, 'second.bin'), 'sent', XFER_TIMEOUT)
    except TimeoutError as e:
        pytest.fail('%s\n%s' % (e, diag()))
    for r in ra:
        r.wait_states('second.bin', want_out, TAIL_LAG + 5, dir='out')
    for r in rb:
        r.wait_states('second.bin', ['receiving', 'received'], TAIL_LAG + 5,
                      dir='in')
