"""Reliability tests: transfers that survive crashes, restarts, a server
outage, a full disk and an unmount.

Every scenario runs alice -> bob between two real xmppfs mounts through the
session's real Prosody (conftest.py) and ends with the same checks: the
file's MD5 in bob's inbox equals the source, there is exactly ONE copy (no
"name (2)"), and alice's user.xmppfs.state is 'sent' (except the full-disk
scenarios, which check a clean failure instead).

  1. kill -9 of the receiving daemon mid-transfer (S5B direct), restart
     with the same data dir: the transfer resumes (bob's log says
     "resuming", the bytes sent again are < 80 % of the file).
  2. kill -9 of the sending daemon mid-transfer, restart: it resumes.
  3. Prosody stopped mid-transfer and started again ~2 s later, over S5B
     direct (the direct stream may survive) and over IBB (it cannot: the
     transfer must resume).
  4. Prosody down when the file is copied: the file waits, and goes out
     once the daemons have reconnected (bounded wait).
  5. A full disk on the receiver (bob's data dir on a small tmpfs): an
     offer larger than the free space is declined up front (alice:
     'rejected', error mentions space); a disk that fills up mid-transfer
     fails the transfer cleanly (bob's status 'failed', nothing left in
     partial/, the mount still works).
  6. fusermount3 -u of the receiver mid-transfer, mount again: it resumes.
  7. After every kill -9 the dead daemon's state.db passes
     PRAGMA integrity_check (opened read-only while the daemon is down).

A table (scenario | expected | seen | seconds) is printed at the end of the
module. Every wait is bounded. Needs root for the tmpfs mounts of
scenario 5 (skipped otherwise).

Run: /usr/bin/python3 -m pytest -q tests/integration/test_reliability.py
"""

import errno
import os
import sqlite3
import subprocess
import time

import pytest

from xfsutil import make_file, md5_file, tail, wait_for

KiB = 1024
MiB = 1024 * 1024

ALICE = 'alice@localhost'
BOB = 'bob@localhost'

BIG = 600 * MiB          # S5B scenarios: several seconds at ~100+ MB/s
IBB_SIZE = 8 * MiB       # IBB scenarios
TERMINAL = ('sent', 'rejected', 'failed', 'cancelled')
XFER_TIMEOUT = 90        # completion after a disturbance (backoff included)


# ---------------------------------------------------------------- report

class Report:
    """Rows of the summary table; one per scenario."""

    def __init__(self):
        self.rows = []

    def scenario(self, name, expected):
        row = {'scenario': name, 'expected': expected, 'seen': [],
               't0': time.monotonic(), 'secs': None, 'result': 'FAIL'}
        self.rows.append(row)
        return Row(row)

    def table(self):
        cols = ('scenario', 'result', 'expected', 'seen', 'secs')
        lines = []
        data = []
        for r in self.rows:
            data.append((r['scenario'], r['result'], r['expected'],
                         ', '.join(r['seen']) or '-',
                         '%.1f' % r['secs'] if r['secs'] is not None
                         else '-'))
        w = [max([len(c)] + [len(d[i]) for d in data])
             for i, c in enumerate(cols)]
        w[3] = min(w[3], 110)

        def fmt(vals):
            return ' | '.join(v.ljust(w[i]) if i != 3 else v
                              for i, v in enumerate(vals))
        lines.append(fmt(cols))
        lines.append('-+-'.join('-' * x for x in w))
        for d in data:
            lines.append(fmt(d))
        return '\n'.join(lines)


class Row:
    def __init__(self, row):
        self.row = row

    def see(self, text):
        self.row['seen'].append(text)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.row['secs'] = time.monotonic() - self.row['t0']
        if et is None:
            self.row['result'] = 'pass'
        else:
            msg = str(ev).strip().splitlines()[0] if str(ev).strip() \
                else et.__name__
            self.row['seen'].append('FAILED: ' + msg[:160])
        return False


@pytest.fixture(scope='module')
def report(request):
    rep = Report()
    yield rep
    text = ('\n\n==== xmppfs reliability summary ====\n%s\n'
            % rep.table())
    capman = request.config.pluginmanager.getplugin('capturemanager')
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print(text, flush=True)
    else:
        print(text, flush=True)


@pytest.fixture(scope='module')
def big_src(tmp_path_factory):
    """A 600 MiB source file shared by the S5B scenarios: (path, md5)."""
    d = tmp_path_factory.mktemp('reliability-src')
    p = d / 'big.bin'
    return str(p), make_file(str(p), BIG, seed='reliability-big')


# ---------------------------------------------------------------- helpers

def run(*args, **kw):
    return subprocess.run(list(args), check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120, **kw)


def diag(*mounts, lines=30):
    out = []
    for m in mounts:
        out.append('--- %s (%s) log tail:\n%s'
                   % (m.jid, m.log_path, tail(m.log_path, lines)))
    return '\n'.join(out)


def xa(path, name):
    try:
        return os.getxattr(path, 'user.xmppfs.' + name).decode()
    except OSError as e:
        if e.errno == errno.ENODATA:
            return ''
        raise


def xattrs(path):
    return dict((k, xa(path, k))
                for k in ('state', 'progress', 'error', 'peer', 'method'))


def outdir(m, jid=BOB):
    d = m.outbox(jid)
    try:
        os.mkdir(d)
    except FileExistsError:
        pass
    return d


def pct(n, size):
    return 100.0 * n / size if size else 100.0


def wait_progress(a, path, size, frac, others=(), timeout=60):
    """Wait until alice is sending `path` and its progress is > frac of
    size; return the progress. Fails if it ends first."""
    last = {}

    def check():
        last.update(xattrs(path))
        st = last['state']
        if st in TERMINAL:
            pytest.fail('%s ended (%r) before reaching %d %%: %r\n%s'
                        % (path, st, frac * 100, last, diag(a, *others)))
        p = int(last['progress'] or 0)
        return p if st == 'sending' and p > frac * size else 0
    try:
        return wait_for(check, timeout, interval=0.01)
    except TimeoutError:
        pytest.fail('%s: not past %d %% after %ss: %r\n%s'
                    % (path, frac * 100, timeout, last, diag(a, *others)))


def wait_state(m, path, want, timeout=XFER_TIMEOUT, others=(),
               grace=1.5):
    """Wait until outbox file `path` of m is in state `want`; a different
    terminal state that lasts more than `grace` s fails at once."""
    last = {}
    deadline = time.monotonic() + timeout
    bad_since = None
    while True:
        try:
            last.update(xattrs(path))
        except OSError as e:
            last['oserror'] = repr(e)
        st = last.get('state')
        if st == want:
            return last
        now = time.monotonic()
        if st in TERMINAL:
            bad_since = bad_since or now
            if now - bad_since > grace:
                pytest.fail('%s: state %r, want %r (xattrs %r)\n%s'
                            % (path, st, want, last, diag(m, *others)))
        else:
            bad_since = None
        if now > deadline:
            pytest.fail('%s: still %r after %ss, want %r (xattrs %r)\n%s'
                        % (path, st, timeout, want, last,
                           diag(m, *others)))
        time.sleep(0.05)


def inbox_names(m, sender=ALICE):
    try:
        return sorted(os.listdir(m.inbox(sender)))
    except FileNotFoundError:
        return []


def wait_inbox(b, name, timeout=XFER_TIMEOUT, others=()):
    try:
        wait_for(lambda: name in inbox_names(b), timeout, interval=0.05)
    except TimeoutError:
        pytest.fail('%s: %s not in inbox/%s after %ss (have %r)\n%s'
                    % (b.jid, name, ALICE, timeout, inbox_names(b),
                       diag(b, *others)))


def partial_sizes(m):
    """{name: size} of the files in m's data_dir/partial/ (read directly,
    not through the mount)."""
    d = os.path.join(m.data_dir, 'partial')
    out = {}
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for n in names:
        try:
            out[n] = os.stat(os.path.join(d, n)).st_size
        except FileNotFoundError:
            pass
    return out


def db_integrity(m):
    """PRAGMA integrity_check of m's state.db, opened read-only (the
    daemon must be down)."""
    assert not m.running(), 'integrity check needs the daemon down'
    path = os.path.join(m.data_dir, 'state.db')
    assert os.path.exists(path), path
    con = sqlite3.connect('file:%s?mode=ro' % path, uri=True, timeout=5)
    try:
        rows = con.execute('PRAGMA integrity_check').fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def check_db(m, row):
    res = db_integrity(m)
    assert res == ['ok'], ('%s state.db integrity_check: %r'
                           % (m.jid, res[:20]))
    row.see('db ok')


STATUS_COLS = ('dir', 'state', 'progress', 'size', 'method', 'jid', 'name',
               'error')


def status_rows(m):
    with open(os.path.join(m.path, 'status'), encoding='utf-8') as f:
        text = f.read()
    rows = []
    for l in text.split('\n')[1:]:
        if not l:
            continue
        f = l.split('\t')
        if len(f) != len(STATUS_COLS):
            continue
        rows.append(dict(zip(STATUS_COLS, f)))
    return rows


def log_mark(m):
    return len(m.log_text())


def log_since(m, mark):
    return m.log_text()[mark:]


def grep(text, *words):
    return [l for l in text.splitlines() if all(w in l for w in words)]


def final_checks(a, b, path, name, size, digest, row, method=None):
    """Alice 'sent', one copy in bob's inbox with the right MD5."""
    wait_inbox(b, name, others=(a,))
    x = wait_state(a, path, 'sent', others=(b,))
    names = inbox_names(b)
    assert names == [name], ('bob inbox/%s: %r, want exactly [%r]\n%s'
                             % (ALICE, names, name, diag(a, b)))
    got = os.path.join(b.inbox(ALICE), name)
    assert os.stat(got).st_size == size
    assert md5_file(got) == digest, 'MD5 of the received file differs'
    assert int(x['progress']) == size, x
    if method:
        assert x['method'] == method, (x, diag(a, b))
    # Still one copy a moment later (no late duplicate from a retry).
    time.sleep(1.0)
    names = inbox_names(b)
    assert names == [name], ('bob inbox/%s a second later: %r\n%s'
                             % (ALICE, names, diag(a, b)))
    assert xa(path, 'state') == 'sent'
    row.see('sent (%s), md5 ok, 1 copy' % x['method'])
    return x


def start_send(a, src, name=None):
    """cp src into alice's outbox/bob; returns the outbox path."""
    d = outdir(a)
    name = name or os.path.basename(src)
    run('cp', src, os.path.join(d, name))
    return os.path.join(d, name)


# ---------------------------------------------------------------- 1. kill rx

def test_kill_receiver(xmppfs, big_src, report):
    src, digest = big_src
    name = 'big.bin'
    with report.scenario('1 kill -9 receiver (s5b-direct, 600 MiB)',
                         'sent, md5 ok, 1 copy, resumed (<80 % resent), '
                         'db ok') as row:
        b = xmppfs('bob')
        a = xmppfs('alice')
        dst = start_send(a, src, name)
        prog = wait_progress(a, dst, BIG, 0.30, others=(b,))
        b.kill()
        assert not b.running()
        row.see('killed at %.0f %%' % pct(prog, BIG))
        check_db(b, row)
        parts = partial_sizes(b)
        held = max(parts.values()) if parts else 0
        mark = log_mark(b)
        t_restart = time.monotonic()
        b.restart()
        final_checks(a, b, dst, name, BIG, digest, row, 's5b-direct')
        row.see('%.1f s after restart' % (time.monotonic() - t_restart))
        after = log_since(b, mark)
        res = grep(after, 'accepted', name, 'resuming')
        # Killed after every byte had arrived (the sender already calls an
        # S5B file sent when its last byte is written): the restart itself
        # verifies the complete partial against the MD5 and publishes it.
        res = res or (held == BIG and
                      grep(after, name, 'published after the restart'))
        assert res, ('bob did not resume after the restart (partial held '
                     '%d bytes; partial/ was %r); bob log since restart:\n'
                     '%s' % (held, parts, after[-3000:]))
        resent = BIG - held
        row.see('resumed from %.0f %% (resent %.0f %%)'
                % (pct(held, BIG), pct(resent, BIG)))
        assert held > 0, 'no partial data kept in %s/partial' % b.data_dir
        assert resent < 0.8 * BIG, ('resent %d of %d bytes'
                                    % (resent, BIG))


# ---------------------------------------------------------------- 2. kill tx

def test_kill_sender(xmppfs, big_src, report):
    src, digest = big_src
    name = 'big.bin'
    with report.scenario('2 kill -9 sender (s5b-direct, 600 MiB)',
                         'sent, md5 ok, 1 copy, resumed, db ok') as row:
        b = xmppfs('bob')
        a = xmppfs('alice')
        dst = start_send(a, src, name)
        prog = wait_progress(a, dst, BIG, 0.30, others=(b,))
        mark = log_mark(b)
        a.kill()
        assert not a.running()
        row.see('killed at %.0f %%' % pct(prog, BIG))
        check_db(a, row)
        # Bob notices the stream broke off; his partial then holds what
        # will not be sent again.
        try:
            wait_for(lambda: grep(log_since(b, mark), 'receiving', name,
                                  'failed'), 20, interval=0.1)
        except TimeoutError:
            pytest.fail('bob did not notice the dead sender in 20 s\n%s'
                        % diag(b))
        parts = partial_sizes(b)
        held = max(parts.values()) if parts else 0
        t_restart = time.monotonic()
        a.restart()
        final_checks(a, b, dst, name, BIG, digest, row, 's5b-direct')
        row.see('%.1f s after restart' % (time.monotonic() - t_restart))
        after = log_since(b, mark)
        assert grep(after, 'accepted', name, 'resuming'), (
            'bob did not resume (partial held %d bytes); bob log:\n%s'
            % (held, after[-3000:]))
        resent = BIG - held
        row.see('resumed from %.0f %% (resent %.0f %%)'
                % (pct(held, BIG), pct(resent, BIG)))
        assert held > 0 and resent < 0.8 * BIG, (held, parts)


# ---------------------------------------------------------------- 3. prosody

def test_prosody_restart_s5b(xmppfs, prosody, big_src, report):
    src, digest = big_src
    name = 'big.bin'
    with report.scenario('3a Prosody stop/start mid-transfer (s5b-direct)',
                         'sent, md5 ok, 1 copy') as row:
        b = xmppfs('bob')
        a = xmppfs('alice')
        dst = start_send(a, src, name)
        ma, mb = log_mark(a), log_mark(b)
        prog = wait_progress(a, dst, BIG, 0.30, others=(b,))
        try:
            prosody.stop()
            row.see('stopped at %.0f %%' % pct(prog, BIG))
            time.sleep(2.0)
        finally:
            prosody.start()
        t_up = time.monotonic()
        final_checks(a, b, dst, name, BIG, digest, row, 's5b-direct')
        row.see('%.1f s after start' % (time.monotonic() - t_up))
        la, lb = log_since(a, ma), log_since(b, mb)
        if grep(lb, 'accepted', name, 'resuming'):
            row.see('stream broke, resumed')
        elif grep(la, 'broke off') or grep(lb, 'receiving', name, 'failed'):
            row.see('stream broke, restarted from 0')
        else:
            row.see('direct stream survived')


def test_prosody_restart_ibb(xmppfs, prosody, tmp_path, report):
    name = 'ibb.bin'
    src = str(tmp_path / name)
    digest = make_file(src, IBB_SIZE, seed='reliability-ibb')
    with report.scenario('3b Prosody stop/start mid-transfer (ibb, 8 MiB)',
                         'sent, md5 ok, 1 copy, resumed') as row:
        b = xmppfs('bob')
        a = xmppfs('alice', methods='ibb')
        mb = log_mark(b)
        dst = start_send(a, src, name)
        prog = wait_progress(a, dst, IBB_SIZE, 0.30, others=(b,))
        try:
            prosody.stop()
            row.see('stopped at %.0f %%' % pct(prog, IBB_SIZE))
            time.sleep(2.0)
            held = max(partial_sizes(b).values() or [0])
        finally:
            prosody.start()
        t_up = time.monotonic()
        final_checks(a, b, dst, name, IBB_SIZE, digest, row, 'ibb')
        row.see('%.1f s after start' % (time.monotonic() - t_up))
        lb = log_since(b, mb)
        assert grep(lb, 'accepted', name, 'resuming'), (
            'IBB transfer did not resume after the outage (bob held %d '
            'bytes); bob log:\n%s' % (held, lb[-3000:]))
        row.see('resumed from %.0f %%' % pct(held, IBB_SIZE))


# ---------------------------------------------------------------- 4. down

def test_prosody_down_at_cp(xmppfs, prosody, tmp_path, report):
    name = 'queued.bin'
    src = str(tmp_path / name)
    size = 3 * MiB + 11
    digest = make_file(src, size, seed='reliability-queued')
    with report.scenario('4 Prosody down at cp, then up',
                         "waiting, then sent <= 30 s after start") as row:
        b = xmppfs('bob')
        a = xmppfs('alice')
        d = outdir(a)
        try:
            prosody.stop()
            run('cp', src, d + '/')
            dst = os.path.join(d, name)
            wait_state(a, dst, 'waiting', timeout=15, others=(b,))
            t_end = time.monotonic() + 2.0
            while time.monotonic() < t_end:
                st = xa(dst, 'state')
                assert st == 'waiting', (xattrs(dst), diag(a))
                time.sleep(0.1)
            row.see('waiting while down')
        finally:
            prosody.start()
        t_up = time.monotonic()
        wait_inbox(b, name, timeout=30, others=(a,))
        wait_state(a, dst, 'sent', timeout=max(1, 35 - (time.monotonic()
                                                        - t_up)),
                   others=(b,))
        row.see('out %.1f s after start' % (time.monotonic() - t_up))
        final_checks(a, b, dst, name, size, digest, row)


# ---------------------------------------------------------------- 5. disk

@pytest.fixture
def tmpfs(tmp_path):
    """Factory: tmpfs(size_str) -> a directory on a fresh tmpfs of that
    size; unmounted (lazily if busy) in teardown."""
    if os.geteuid() != 0:
        pytest.skip('needs root to mount a tmpfs')
    made = []

    def make(size):
        d = tmp_path / ('tmpfs%d' % len(made))
        d.mkdir()
        run('mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size,
            'tmpfs', str(d))
        made.append(str(d))
        return str(d)
    yield make
    for d in made:
        for _ in range(20):
            r = subprocess.run(['umount', d], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode == 0 or not os.path.ismount(d):
                break
            time.sleep(0.25)
        if os.path.ismount(d):
            subprocess.run(['umount', '-l', d])


def free_bytes(path):
    sv = os.statvfs(path)
    return sv.f_bavail * sv.f_frsize


def fill(path, leave):
    """Grow file `path` (fallocate, in chunks: the transfer competes for
    the same space) until less than `leave` bytes are free; returns its
    size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    size = 0
    chunk = 16 * MiB
    try:
        while chunk >= 64 * KiB:
            room = free_bytes(os.path.dirname(path)) - leave
            if room <= 0:
                break
            n = min(chunk, room)
            try:
                os.posix_fallocate(fd, size, n)
                size += n
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                chunk //= 4
    finally:
        os.close(fd)
    return size


def test_full_disk_declined(tmpfs, xmppfs, tmp_path, report):
    name = 'too-big.bin'
    src = str(tmp_path / name)
    make_file(src, 50 * MiB, seed='reliability-toobig')
    with report.scenario('5a full disk: 50 MiB offer to a 20 MiB tmpfs',
                         "declined up front: 'rejected', error about "
                         "space") as row:
        disk = tmpfs('20m')
        b = xmppfs('bob', data_dir=os.path.join(disk, 'bob-data'))
        # The factory's Mount.data_dir ignores a data_dir= override.
        b.data_dir = os.path.join(disk, 'bob-data')
        a = xmppfs('alice')
        dst = start_send(a, src, name)
        x = wait_state(a, dst, 'rejected', timeout=30, others=(b,))
        row.see("rejected: %r" % x['error'])
        assert 'space' in x['error'].lower(), x
        time.sleep(1.0)
        assert inbox_names(b) == [], inbox_names(b)
        assert partial_sizes(b) == {}, partial_sizes(b)
        assert xa(dst, 'state') == 'rejected'
        b.unmount()


# (method, tmpfs size, file size, sender options). The free-space check
# is made when the offer arrives, so the disk is filled (fallocate) while
# the data flows: the offer passes, the disk fills mid-transfer.
MIDFILL = {
    's5b-direct': ('640m', BIG, {}),
    'ibb': ('20m', 12 * MiB, {'methods': 'ibb'}),
}


@pytest.mark.parametrize('method', sorted(MIDFILL))
def test_full_disk_mid_transfer(tmpfs, xmppfs, tmp_path, big_src, report,
                                method):
    tsize, size, sopts = MIDFILL[method]
    if size == BIG:
        src = big_src[0]
        name = 'big.bin'
    else:
        name = 'fill.bin'
        src = str(tmp_path / name)
        make_file(src, size, seed='reliability-fill')
    with report.scenario('5b disk fills mid-transfer (%s, %d MiB on %s '
                         'tmpfs)' % (method, size // MiB, tsize),
                         "bob: failed, no partial left; mount usable "
                         "(small file arrives)") as row:
        disk = tmpfs(tsize)
        data = os.path.join(disk, 'bob-data')
        b = xmppfs('bob', data_dir=data)
        b.data_dir = data   # the factory's Mount keeps its default here
        a = xmppfs('alice', **sopts)
        assert free_bytes(disk) > size + 2 * MiB, free_bytes(disk)
        mb = log_mark(b)
        d = outdir(a)
        run('cp', src, os.path.join(d, name))
        dst = os.path.join(d, name)

        # As soon as bob's partial holds some data, fill the disk.
        def receiving():
            p = partial_sizes(b)
            return max(p.values()) if p and max(p.values()) > 256 * KiB \
                else 0
        try:
            got = wait_for(receiving, 30, interval=0.001)
        except TimeoutError:
            pytest.fail('bob never started receiving\n%s' % diag(a, b))
        filler = os.path.join(disk, 'filler')
        fb = fill(filler, 2 * MiB)
        row.see('disk filled at %.0f %% (filler %d MiB)'
                % (pct(got, size), fb // MiB))
        assert got < size

        # Bob fails the transfer cleanly. Every check below is collected
        # so one run reports all that is wrong; the test fails at the end.
        problems = []

        def in_rows():
            return [r for r in status_rows(b)
                    if r['dir'] == 'in' and r['name'] == name]

        def bob_failed():
            rows = in_rows()
            return rows if rows and all(r['state'] == 'failed'
                                        for r in rows) else None
        try:
            rows = wait_for(bob_failed, 15, interval=0.1)
            row.see('bob: failed (%s)' % rows[-1]['error'])
        except TimeoutError:
            rows = in_rows()
            row.see('bob status: %s' % ','.join(r['state'] for r in rows))
            problems.append(
                'bob status does not show %s failed 15 s after the disk '
                'filled: %r (%d bytes free on the tmpfs, partial/: %r)'
                % (name, rows, free_bytes(disk), partial_sizes(b)))
        lb = log_since(b, mb)
        if not grep(lb, 'receiving', name, 'failed'):
            problems.append('bob log has no "receiving %s ... failed"'
                            % name)
        if name in inbox_names(b):
            problems.append('%s in bob inbox: %r' % (name, inbox_names(b)))
        # Alice must not claim success; let its retry (if any) run into
        # the full disk, then note where it ends.
        t_end = time.monotonic() + 15
        st = xa(dst, 'state')
        while time.monotonic() < t_end and st not in TERMINAL:
            time.sleep(0.2)
            st = xa(dst, 'state')
        row.see('alice: %s (%s)' % (st, xa(dst, 'error') or '-'))
        if st == 'sent':
            problems.append('alice says sent: %r' % xattrs(dst))
        parts = partial_sizes(b)
        if parts:
            row.see('partial left: %r' % parts)
            problems.append('partial data left in %s/partial after the '
                            'failed transfer: %r' % (data, parts))
        else:
            row.see('no partial left')

        # The mount still works: cancel the big one, free the disk, send
        # a small file.
        os.unlink(dst)
        os.unlink(filler)
        small = str(tmp_path / 'after-full.txt')
        sd = make_file(small, 100 * KiB + 3, seed='after-full')
        sdst = start_send(a, small)
        try:
            wait_for(lambda: 'after-full.txt' in inbox_names(b), 30,
                     interval=0.05)
            x = wait_state(a, sdst, 'sent', timeout=30, others=(b,))
            got = os.path.join(b.inbox(ALICE), 'after-full.txt')
            if inbox_names(b) != ['after-full.txt']:
                problems.append('bob inbox after: %r' % inbox_names(b))
            if md5_file(got) != sd:
                problems.append('after-full.txt: MD5 differs')
            row.see('small file after: %s, md5 ok' % x['state'])
        except TimeoutError:
            row.see('small file after: not received')
            problems.append('a small file sent afterwards did not arrive '
                            'in 30 s (alice %r)' % xattrs(sdst))
        lb = log_since(b, mb)
        b.unmount()
        assert not problems, ('\n'.join(problems) + '\n' + diag(a)
                              + '\n--- bob log since the mount:\n'
                              + lb[-4000:])


# ---------------------------------------------------------------- 6. umount

def test_unmount_receiver(xmppfs, big_src, report):
    src, digest = big_src
    name = 'big.bin'
    with report.scenario('6 fusermount3 -u receiver mid-transfer, mount '
                         'again', 'sent, md5 ok, 1 copy, resumed') as row:
        b = xmppfs('bob')
        a = xmppfs('alice')
        dst = start_send(a, src, name)
        prog = wait_progress(a, dst, BIG, 0.30, others=(b,))
        t0 = time.monotonic()
        rc = b.unmount()
        row.see('unmounted at %.0f %% (exit %s, %.1f s)'
                % (pct(prog, BIG), rc, time.monotonic() - t0))
        assert not b.running()
        assert rc == 0, 'daemon exit code %r after fusermount3 -u\n%s' % (
            rc, diag(b))
        check_db(b, row)
        parts = partial_sizes(b)
        held = max(parts.values()) if parts else 0
        mark = log_mark(b)
        t_restart = time.monotonic()
        b.start()
        final_checks(a, b, dst, name, BIG, digest, row, 's5b-direct')
        row.see('%.1f s after mount' % (time.monotonic() - t_restart))
        after = log_since(b, mark)
        assert grep(after, 'accepted', name, 'resuming'), (
            'no resume after a clean unmount (partial held %d bytes, %r); '
            'bob log since mount:\n%s' % (held, parts, after[-3000:]))
        resent = BIG - held
        row.see('resumed from %.0f %% (resent %.0f %%)'
                % (pct(held, BIG), pct(resent, BIG)))
        assert held > 0 and resent < 0.8 * BIG, (held, parts)
