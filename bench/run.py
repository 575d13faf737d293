#!/usr/bin/python3
"""xmppfs benchmark (issue "Speed"; DESIGN.md "Speed and size").

    /usr/bin/python3 bench/run.py [--quick] [--rows 1,2,...] [--runs N]
                                  [--bin PATH] [--keep] [--json FILE]

Starts its own Prosody (127.0.0.1 only, tests/integration/xfsutil.py) and
xmppfs mounts under a temporary directory, measures each row against a
baseline taken in the same run on the same machine, and prints a Markdown
table (medians of N runs, N=3 by default) with the date and the machine
above it. --quick: tiny sizes, one run, no thresholds (CI smoke, < 60 s).

Rows (sizes are the full-mode defaults; the table says what was used):
  1  dd bs=1M 1 GiB into an outbox (contact offline, settle_ms=600000; the
     final close is timed apart) vs dd into the data directory's filesystem
  2  S5B direct 1 GiB: cp start -> complete in B's inbox, vs cp + socat
     over 127.0.0.1 + md5sum one after another; and the streaming phase
     (state 'sending' -> in inbox) vs `openssl speed md5` on one core
  3  S5B through Prosody's proxy65 (sender s5b_host=none), streaming phase
     vs the same bytes relayed through proxy65 with raw sockets
     (bench/proxy_relay.py)
  4  IBB (sender methods=ibb) vs slixpeer's IBB (4 KiB blocks, one in
     flight) into the same xmppfs receiver, timed at the receiver (partial
     file created -> complete in inbox); without limits (nagle off) and on
     Debian's stock c2s rate limit (10 kB/s, small size)
  5  1,000 files of 4 KiB with one cp -r into an outbox until all are in the
     peer's inbox (files/s) vs cp -r into a local directory
  6  reading 1 GiB out of an inbox (dd bs=1M, caches dropped when allowed)
     vs reading the stored file data_dir/inbox/<id>
  7  peak RSS of both daemons during rows 2 and 5, small vs big

Every wait is bounded; the whole run has a time budget (full: 9.5 min) and
rows that would not fit are skipped and marked so. Only processes this
script started are stopped (by PID); mounts are unmounted and the temporary
directory removed, also on failure or SIGINT/SIGTERM.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
import xfsutil as X  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

FULL = dict(runs=3, write=GiB, s5b=GiB, s5b_small=100 * MiB,
            proxy=512 * MiB, ibb=16 * MiB, ibb_limited=64 * KiB,
            files=1000, files_small=100, file_size=4 * KiB,
            md5_seconds=3, budget=570, settle_ms=100, min_step=30)
QUICK = dict(runs=1, write=16 * MiB, s5b=16 * MiB, s5b_small=4 * MiB,
             proxy=8 * MiB, ibb=256 * KiB, ibb_limited=8 * KiB,
             files=30, files_small=10, file_size=4 * KiB,
             md5_seconds=1, budget=52, settle_ms=100, min_step=8)

RSS_LIMIT = 64 * MiB
POLL = 0.005


class Skip(Exception):
    """A row (or the rest of one) does not fit the time budget."""


def fmt_size(n):
    if n >= GiB and n % GiB == 0:
        return '%d GiB' % (n // GiB)
    if n >= MiB and n % MiB == 0:
        return '%d MiB' % (n // MiB)
    if n >= KiB and n % KiB == 0:
        return '%d KiB' % (n // KiB)
    return '%d B' % n


def fmt_rate(bps):
    if bps is None:
        return '–'
    if bps >= 10 * MiB:
        return '%.0f MiB/s' % (bps / MiB)
    if bps >= MiB:
        return '%.2f MiB/s' % (bps / MiB)
    return '%.1f KiB/s' % (bps / KiB)


def fmt_mib(n):
    return '–' if n is None else '%.1f MiB' % (n / MiB)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def sh(argv, timeout, **kw):
    """Run a command to completion (bounded); raise with its stderr on
    failure."""
    r = subprocess.run(argv, stdout=kw.pop('stdout', subprocess.PIPE),
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (
            ' '.join(argv[:3]), r.returncode,
            r.stderr.decode(errors='replace')[-500:]))
    return r


def listening(port):
    """Is something listening on 127.0.0.1:port (without connecting)?"""
    want = ':%04X' % port
    try:
        with open('/proc/net/tcp') as f:
            for line in f.readlines()[1:]:
                p = line.split()
                if p[1].endswith(want) and p[3] == '0A':
                    return True
    except OSError:
        pass
    return False


# ---------------------------------------------------------------- RSS

def read_status(pid):
    """(VmRSS, VmHWM) in bytes, or (None, None)."""
    rss = hwm = None
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith('VmHWM:'):
                    hwm = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss, hwm


def cpu_seconds(pid):
    """utime + stime of a process (all threads), in seconds."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            p = f.read().rsplit(')', 1)[1].split()
        return (int(p[11]) + int(p[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU used by some processes between start() and stop(), as a share
    of one core over the wall time."""

    def __init__(self, procs):
        self.procs = dict((k, v) for k, v in procs.items() if v)
        self.t0 = time.monotonic()
        self.c0 = dict((k, cpu_seconds(v)) for k, v in self.procs.items())

    def stop(self):
        dt = time.monotonic() - self.t0
        out = []
        for k, pid in self.procs.items():
            c = cpu_seconds(pid)
            if c is not None and self.c0[k] is not None and dt > 0:
                out.append('%s %.0f%%' % (k, 100 * (c - self.c0[k]) / dt))
        return 'CPU (of one core): ' + ', '.join(out)


class RssSampler(threading.Thread):
    """Samples VmRSS of the watched daemons every 20 ms while a label is
    set; keeps the maximum per (label, role)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pids = {}
        self.label = None
        self.peak = {}
        self.hwm = {}
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()

    def watch(self, role, pid):
        with self.lock:
            self.pids[role] = pid

    def set_label(self, label):
        with self.lock:
            if self.label is not None:
                self._hwm(self.label)
            self.label = label

    def _hwm(self, label):
        for role, pid in self.pids.items():
            _, h = read_status(pid)
            if h is not None:
                self.hwm[(label, role)] = h

    def run(self):
        while not self.stop_ev.wait(0.02):
            with self.lock:
                if self.label is None:
                    continue
                for role, pid in self.pids.items():
                    r, _ = read_status(pid)
                    if r is not None:
                        k = (self.label, role)
                        self.peak[k] = max(self.peak.get(k, 0), r)


# ---------------------------------------------------------------- bench

class Bench:
    def __init__(self, a):
        self.a = a
        self.cfg = dict(QUICK if a.quick else FULL)
        if a.runs:
            self.cfg['runs'] = a.runs
        if a.settle_ms is not None:
            self.cfg['settle_ms'] = a.settle_ms
        for kv in a.set or ():
            k, _, v = kv.partition('=')
            if k not in self.cfg or not v:
                raise SystemExit('bench: --set %s: keys are %s'
                                 % (kv, ', '.join(sorted(self.cfg))))
            self.cfg[k] = type(self.cfg[k])(float(v))
        self.t_start = time.monotonic()
        self.deadline = self.t_start + (a.budget or self.cfg['budget'])
        self.rows = set(int(x) for x in a.rows.split(',')) if a.rows \
            else set(range(1, 8))
        if 7 in self.rows:
            self.rows |= {2, 5}
        self.root = None
        self.mounts = []
        self.prosodys = []
        self.procs = []
        self.table = []          # dict rows for the Markdown table
        self.details = []        # free text lines
        self.raw = {}            # for --json
        self.notes = []
        self.log_paths = []
        self.sampler = RssSampler()
        self.bin = None
        self.reserve = 0.0

    # -- budget
    def left(self):
        """Seconds left for the current step (minus what later steps
        reserved)."""
        return self.deadline - self.reserve - time.monotonic()

    def need(self, secs, what):
        if self.left() < secs:
            raise Skip('%s: needs ~%.0fs, %.0fs left in the time budget'
                       % (what, secs, self.left()))

    def note(self, s):
        self.notes.append(s)
        print('bench: ' + s, file=sys.stderr, flush=True)

    def progress(self, s):
        print('bench [%5.1fs] %s' % (time.monotonic() - self.t_start, s),
              file=sys.stderr, flush=True)

    # -- setup / teardown
    def find_bin(self):
        b = self.a.bin or os.environ.get('XMPPFS_BIN') or os.path.join(
            REPO, 'build-bench', 'xmppfs')
        # The default binary is always brought up to date (an incremental
        # build is a no-op when nothing changed), so a stale build-bench/
        # is never measured.
        if not self.a.bin and not os.environ.get('XMPPFS_BIN'):
            self.progress('building release binary in build-bench/')
            sh(['cmake', '-S', REPO, '-B', os.path.join(REPO, 'build-bench'),
                '-DCMAKE_BUILD_TYPE=Release', '-DXFS_INTEGRATION=OFF'], 120)
            sh(['cmake', '--build', os.path.join(REPO, 'build-bench'),
                '-j2'], 600)
        if not os.access(b, os.X_OK):
            raise SystemExit('bench: no xmppfs binary at %s' % b)
        self.bin = os.path.abspath(b)
        bt = '?'
        cache = os.path.join(os.path.dirname(self.bin), 'CMakeCache.txt')
        try:
            with open(cache) as f:
                m = re.search(r'^CMAKE_BUILD_TYPE:\w+=(.*)$', f.read(), re.M)
                bt = m.group(1) or '(none)' if m else '?'
        except OSError:
            pass
        self.build_type = bt

    def setup(self):
        why = X.fuse_missing_reason()
        if why:
            raise SystemExit('bench: cannot mount: %s' % why)
        self.find_bin()
        base = self.a.tmpdir or os.environ.get('TMPDIR') or '/tmp'
        self.root = tempfile.mkdtemp(prefix='xmppfs-bench-', dir=base)
        self.local = os.path.join(self.root, 'local')
        os.makedirs(self.local)
        self.sampler.start()

    def prosody(self, tag, limits=False):
        self.progress('starting Prosody %s (limits=%s)' % (tag, limits))
        p = X.start_prosody(os.path.join(self.root, tag), limits=limits,
                            nagle=False, log_level='info')
        self.prosodys.append(p)
        self.log_paths.append(('prosody-' + tag, p.log_path))
        return p

    def mount(self, p, name, opts, tag):
        d = os.path.join(self.root, tag)
        os.makedirs(d, exist_ok=True)
        pw = os.path.join(d, 'password')
        with open(pw, 'w') as f:
            f.write(p.password(name) + '\n')
        os.chmod(pw, 0o600)
        data = os.path.join(d, 'data')
        m = X.Mount(self.bin, p.jid(name), os.path.join(d, 'mnt'), data,
                    os.path.join(d, 'xmppfs.log'),
                    ['server=' + p.server, 'cafile=' + p.cafile,
                     'password_file=' + pw, 'data_dir=' + data] + opts, pw)
        self.mounts.append(m)
        self.log_paths.append((tag, m.log_path))
        m.start(mount_timeout=20, online_timeout=30)
        return m

    def unmount(self, m):
        rc = m.unmount(timeout=20)
        if rc not in (0, None):
            self.note('%s (%s) exited with %s on unmount'
                      % (m.jid, os.path.basename(os.path.dirname(m.path)),
                         rc))
        if m in self.mounts:
            self.mounts.remove(m)

    def teardown(self):
        self.sampler.stop_ev.set()
        for p in self.procs:
            X.stop_pid(p, 3)
        for m in list(self.mounts):
            try:
                self.unmount(m)
            except Exception as e:          # keep cleaning up
                self.note('unmount %s: %r' % (m.path, e))
                try:
                    m.kill()
                except Exception:
                    pass
        for p in self.prosodys:
            try:
                p.stop()
            except Exception as e:
                self.note('stopping Prosody: %r' % e)
        self.scan_logs()
        if self.root and not self.a.keep:
            still = [m.path for m in self.mounts if os.path.ismount(m.path)]
            if still:
                self.note('NOT removing %s: still mounted: %s'
                          % (self.root, still))
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        elif self.root:
            self.note('kept %s' % self.root)

    def scan_logs(self):
        """Collect warnings/errors from the mount logs (the suspicious
        part of the report)."""
        self.log_findings = []
        pat = re.compile(r'\b(warning|error|critical|fatal|assert|'
                         r'ERROR|AddressSanitizer|runtime error)\b')
        for tag, path in self.log_paths:
            if tag.startswith('prosody'):
                pat_p = re.compile(r'\t(error|warn)\t')
                lines = [l for l in X.tail(path, 100000).splitlines()
                         if pat_p.search(l)]
            else:
                lines = [l for l in X.tail(path, 100000).splitlines()
                         if pat.search(l)
                         and 'disconnected from the server' not in l]
            seen = {}
            for l in lines:
                key = re.sub(r'^\S+ ', '', l)          # drop the time
                key = re.sub(r'\d+', 'N', key)
                if key not in seen:
                    seen[key] = [l, 0]
                seen[key][1] += 1
            for key, (l, n) in seen.items():
                self.log_findings.append('%s: %s%s' % (
                    tag, l.strip()[:300], ' (x%d)' % n if n > 1 else ''))

    # -- helpers
    def make_file(self, name, size, seed):
        path = os.path.join(self.root, name)
        md5 = X.make_file(path, size, seed=seed)
        return path, md5

    def add(self, **kw):
        self.table.append(kw)

    def skip_row(self, row, label, why):
        self.add(row=row, label=label, x='–', b='–', ratio='–', target='',
                 ok='skipped', n=0)
        self.note('row %s skipped: %s' % (row, why))

    def runs_fit(self, i, per_run, what, slack=1.3):
        """Before run i (0-based) of a row: does another run fit?"""
        if i == 0:
            self.need(per_run, what)
            return True
        if self.left() < per_run * slack:
            self.note('%s: only %d of %d runs (time budget)'
                      % (what, i, self.cfg['runs']))
            return False
        return True

    def sync(self):
        os.sync()

    def drop_caches(self):
        self.sync()
        try:
            with open('/proc/sys/vm/drop_caches', 'w') as f:
                f.write('3\n')
            return True
        except OSError:
            return False

    # -- one transfer between two xmppfs mounts
    def transfer(self, src, sender, receiver, name, size, timeout,
                 rx_partial=False):
        """cp src into sender's outbox/<receiver>/name, wait until it is in
        receiver's inbox/<sender>/. Times (s, relative to the start of cp):
        cp (cp exited), sending (state 'sending' first seen), done (visible
        in inbox), partial (a new partial file in the receiver's data dir,
        with rx_partial)."""
        out = os.path.join(sender.outbox(receiver.jid), name)
        inb = os.path.join(receiver.inbox(sender.jid), name)
        pdir = os.path.join(receiver.data_dir, 'partial')
        before = set(os.listdir(pdir)) if rx_partial else None
        t = {}
        # Never wait past the overall budget (plus a little).
        timeout = min(timeout, max(20.0, self.deadline + 15
                                   - time.monotonic()))
        t0 = time.monotonic()
        cp = subprocess.Popen(['cp', src, out], stdin=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        self.procs.append(cp)
        deadline = t0 + timeout
        last_offered = None
        try:
            while True:
                now = time.monotonic()
                if 'cp' not in t and cp.poll() is not None:
                    if cp.returncode:
                        raise RuntimeError('cp into outbox failed: %s'
                                           % cp.stderr.read().decode())
                    t['cp'] = now - t0
                if rx_partial and 'partial' not in t:
                    if set(os.listdir(pdir)) - before:
                        t['partial'] = now - t0
                if 'cp' in t and 'sending' not in t:
                    try:
                        st = os.getxattr(out, 'user.xmppfs.state') \
                            .decode().rstrip('\0\n')
                    except OSError:
                        st = None
                    if st == 'offered':
                        last_offered = now - t0
                        t.setdefault('offered', now - t0)
                    elif st == 'sending':
                        t['sending'] = now - t0
                    elif st == 'sent':
                        t['sending'] = last_offered or now - t0
                    elif st in ('failed', 'rejected', 'cancelled'):
                        raise RuntimeError('transfer %s: %s' % (
                            st, self.xattr(out, 'user.xmppfs.error')))
                if os.path.exists(inb):
                    t['done'] = now - t0
                    break
                if now > deadline:
                    raise TimeoutError(
                        '%s not in %s after %.0fs (sender state %s)' % (
                            name, receiver.inbox(sender.jid), timeout,
                            self.xattr(out, 'user.xmppfs.state')))
                time.sleep(POLL)
        finally:
            if cp.poll() is None:
                cp.kill()
            cp.wait(10)
            self.procs.remove(cp)
        got = os.stat(inb).st_size
        if got != size:
            raise RuntimeError('%s: %d bytes in inbox, expected %d'
                               % (name, got, size))
        # Let the sender record 'sent' before anything else happens.
        X.wait_for(lambda: self.xattr(out, 'user.xmppfs.state')
                   in ('sent', 'failed'), 15, 0.01,
                   'sender state sent for %s' % name)
        t['method'] = self.xattr(out, 'user.xmppfs.method')
        t['out'] = out
        t['inbox'] = inb
        return t

    def cpu_procs(self, sender, receiver, prosody=None):
        d = {'sender': sender.proc.pid, 'receiver': receiver.proc.pid}
        if prosody is None and self.prosodys:
            prosody = self.prosodys[0]
        if prosody is not None:
            d['prosody'] = prosody.pid
        return d

    @staticmethod
    def xattr(path, name):
        try:
            return os.getxattr(path, name).decode().rstrip('\0\n')
        except OSError as e:
            return '<%s>' % e.strerror

    def wait_sender_idle(self, m, timeout=20):
        """Wait until the sender's status file lists no transfer in
        progress."""
        busy = re.compile(r'\b(offered|sending|waiting)\b')

        def idle():
            try:
                with open(os.path.join(m.path, 'status')) as f:
                    return not any(busy.search(l) for l in f
                                   if l.startswith('out'))
            except OSError:
                return False
        try:
            X.wait_for(idle, timeout, 0.05)
        except TimeoutError:
            self.note('%s still busy after %ss' % (m.jid, timeout))

    def warmup(self, sender, receiver, tag):
        """A tiny transfer so presence, disco and paths are known."""
        path = os.path.join(self.root, 'warm-%s' % tag)
        with open(path, 'wb') as f:
            f.write(os.urandom(1024))
        t = self.transfer(path, sender, receiver, 'warm-%s' % tag, 1024, 60)
        os.unlink(t['out'])
        os.unlink(t['inbox'])
        return t

    # ============================================================ rows

    def row1(self, p):
        size = self.cfg['write']
        label = 'dd bs=1M %s into outbox (no final close)' % fmt_size(size)
        self.progress('row 1: ' + label)
        m = self.mount(p, 'dave', ['settle_ms=600000'], 'r1-dave')
        try:
            # carol is not mounted yet: no online resource, nothing sent.
            outdir = m.outbox('carol')
            X.wait_for(lambda: os.path.isdir(outdir), 15, 0.05,
                       'outbox/carol')
            same_fs = os.stat(m.data_dir).st_dev == os.stat(
                self.local).st_dev
            count = size // MiB

            def one(path):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                             0o644)
                try:
                    t0 = time.monotonic()
                    sh(['dd', 'if=/dev/zero', 'bs=1M', 'count=%d' % count],
                       60 + size / (20 * MiB), stdout=fd)
                    t1 = time.monotonic()
                finally:
                    os.close(fd)
                t2 = time.monotonic()
                if os.stat(path).st_size != size:
                    raise RuntimeError('%s: wrong size after dd' % path)
                return t1 - t0, t2 - t1

            xs, bs, xc, bc = [], [], [], []
            for i in range(self.cfg['runs']):
                if not self.runs_fit(i, 4 + size / (100 * MiB), 'row 1'):
                    break
                for kind in (('x', 'b') if i % 2 == 0 else ('b', 'x')):
                    self.sync()
                    if kind == 'x':
                        path = os.path.join(outdir, 'dd-%d.bin' % i)
                        w, c = one(path)
                        st = self.xattr(path, 'user.xmppfs.state')
                        if st not in ('waiting', 'staged'):
                            self.note('row 1: outbox file state %r' % st)
                        xs.append(size / w)
                        xc.append(c)
                        os.unlink(path)
                    else:
                        path = os.path.join(self.local, 'dd-%d.bin' % i)
                        w, c = one(path)
                        bs.append(size / w)
                        bc.append(c)
                        os.unlink(path)
            ok = median(xs) / median(bs) if xs and bs else None
            self.add(row='1', label=label, x=fmt_rate(median(xs)),
                     b=fmt_rate(median(bs)) + ' (dd into data-dir fs)',
                     ratio=ok, target=0.8, n=len(xs))
            self.details.append(
                'row 1: outbox MiB/s %s, local MiB/s %s; final close() '
                'took %s s (outbox) vs %s s (local); data dir on the same '
                'filesystem as the baseline file: %s' % (
                    [round(v / MiB) for v in xs], [round(v / MiB) for v in bs],
                    [round(v, 3) for v in xc], [round(v, 3) for v in bc],
                    same_fs))
            self.raw['row1'] = dict(x=xs, b=bs, x_close=xc, b_close=bc)
        finally:
            self.unmount(m)

    def baseline_tcp(self, src, i):
        """cp to a local folder, socat over 127.0.0.1 into a file, md5sum
        the received file; one after another. Returns seconds."""
        size = os.path.getsize(src)
        tmo = 60 + size / (20 * MiB)
        copy = os.path.join(self.local, 'b2-copy-%d' % i)
        recv = os.path.join(self.local, 'b2-recv-%d' % i)
        port = X.free_port()
        rx = subprocess.Popen(
            ['socat', '-b', '1048576', '-u',
             'TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr' % port,
             'CREATE:' + recv], stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.procs.append(rx)
        try:
            X.wait_for(lambda: listening(port) or rx.poll() is not None, 10,
                       0.01, 'socat listening')
            if rx.poll() is not None:
                raise RuntimeError('socat listener exited: %s'
                                   % rx.stderr.read().decode())
            t0 = time.monotonic()
            sh(['cp', src, copy], tmo)
            sh(['socat', '-b', '1048576', '-u', 'OPEN:' + copy,
                'TCP:127.0.0.1:%d' % port], tmo)
            rx.wait(tmo)
            out = sh(['md5sum', recv], tmo).stdout.decode()
            t1 = time.monotonic()
        finally:
            X.stop_pid(rx, 3)
            self.procs.remove(rx)
        if os.path.getsize(recv) != size:
            raise RuntimeError('socat baseline: short copy')
        self._last_md5 = out.split()[0]
        os.unlink(copy)
        os.unlink(recv)
        return t1 - t0

    def openssl_md5(self):
        secs = self.cfg['md5_seconds']
        rates = []
        for i in range(self.cfg['runs']):
            if not self.runs_fit(i, secs + 3, 'openssl speed md5'):
                break
            r = sh(['taskset', '-c', str(i % os.cpu_count()), 'openssl',
                    'speed', '-bytes', '1048576', '-seconds', str(secs),
                    'md5'] if shutil.which('taskset') else
                   ['openssl', 'speed', '-bytes', '1048576', '-seconds',
                    str(secs), 'md5'], secs + 30)
            m = re.search(r'^md5\s+([\d.]+)k\s*$', r.stdout.decode(), re.M)
            if not m:
                raise RuntimeError('cannot parse openssl speed output')
            rates.append(float(m.group(1)) * 1000)
        return rates

    def row2(self, alice, bob):
        size, small = self.cfg['s5b'], self.cfg['s5b_small']
        self.progress('row 2: S5B direct %s (+ %s for RSS)'
                      % (fmt_size(size), fmt_size(small)))
        src, md5 = self.make_file('src-s5b', size, 2)
        src_s, _ = self.make_file('src-s5b-small', small, 22)
        self.warmup(alice, bob, 'r2')
        tmo = 60 + size / (5 * MiB)
        # RSS: a small transfer first, then the big ones.
        self.sync()
        self.sampler.set_label('s5b-small')
        t = self.transfer(src_s, alice, bob, 'small.bin', small, tmo)
        self.sampler.set_label(None)
        os.unlink(t['out'])
        os.unlink(t['inbox'])
        self.details.append('row 2: %s warm-up: e2e %.2fs, streaming %.2fs'
                            % (fmt_size(small), t['done'],
                               t['done'] - t['sending']))
        e2e, stream, base, phases = [], [], [], []
        self.row2_inbox = None
        for i in range(self.cfg['runs']):
            if not self.runs_fit(i, 10 + 2 * size / (60 * MiB), 'row 2'):
                break
            for kind in (('x', 'b') if i % 2 == 0 else ('b', 'x')):
                self.sync()
                if kind == 'b':
                    base.append(size / self.baseline_tcp(src, i))
                    continue
                self.sampler.set_label('s5b-big')
                cpu = CpuMeter(self.cpu_procs(alice, bob))
                t = self.transfer(src, alice, bob, 'big-%d.bin' % i, size,
                                  tmo)
                cpu = cpu.stop()
                self.sampler.set_label(None)
                if t['method'] != 's5b-direct':
                    self.note('row 2 run %d went by %s' % (i, t['method']))
                e2e.append(size / t['done'])
                stream.append(size / (t['done'] - t['sending']))
                phases.append('cp %.2fs, offered at %.2fs, sending at '
                              '%.2fs, in inbox at %.2fs; %s' % (
                                  t['cp'], t.get('offered', -1),
                                  t['sending'], t['done'], cpu))
                os.unlink(t['out'])
                if self.row2_inbox:
                    os.unlink(self.row2_inbox)
                self.row2_inbox = t['inbox']
        if self.row2_inbox:
            got = X.md5_file(self.row2_inbox)
            if got != md5:
                self.note('row 2: MD5 MISMATCH in inbox: %s != %s'
                          % (got, md5))
        md5r = self.openssl_md5()
        self.add(row='2a', label='S5B direct %s end to end (cp start → '
                 'in inbox)' % fmt_size(size), x=fmt_rate(median(e2e)),
                 b=fmt_rate(median(base)) + ' (cp + socat + md5sum)',
                 ratio=median(e2e) / median(base) if e2e and base else None,
                 target=1.0, n=len(e2e))
        self.add(row='2b', label='S5B direct streaming phase (\'sending\' '
                 '→ verified in inbox)', x=fmt_rate(median(stream)),
                 b=fmt_rate(median(md5r)) + ' (openssl md5, 1 core)',
                 ratio=median(stream) / median(md5r) if stream and md5r
                 else None, target=0.8, n=len(stream))
        for p in phases:
            self.details.append('row 2: ' + p)
        self.details.append('row 2: e2e MiB/s %s; streaming MiB/s %s; '
                            'baseline MiB/s %s; openssl md5 MiB/s %s' % (
                                [round(v / MiB) for v in e2e],
                                [round(v / MiB) for v in stream],
                                [round(v / MiB) for v in base],
                                [round(v / MiB) for v in md5r]))
        self.raw['row2'] = dict(e2e=e2e, stream=stream, base=base,
                                md5=md5r, phases=phases)
        os.unlink(src_s)
        self.src_s5b = src

    def row6(self, alice, bob):
        size = self.cfg['s5b']
        label = 'read %s out of inbox (dd bs=1M)' % fmt_size(size)
        self.progress('row 6: ' + label)
        inb = getattr(self, 'row2_inbox', None)
        if not inb or not os.path.exists(inb):
            src = getattr(self, 'src_s5b', None) or self.make_file(
                'src-s5b', size, 2)[0]
            t = self.transfer(src, alice, bob, 'read.bin', size,
                              60 + size / (5 * MiB))
            os.unlink(t['out'])
            inb = t['inbox']
        stored = [os.path.join(bob.data_dir, 'inbox', n)
                  for n in os.listdir(os.path.join(bob.data_dir, 'inbox'))]
        stored = [s for s in stored if os.path.getsize(s) == size]
        if len(stored) != 1:
            raise RuntimeError('row 6: %d stored files of %d bytes in %s'
                               % (len(stored), size, bob.data_dir))
        stored = stored[0]

        def rd(path, cold):
            if cold and not self.drop_caches():
                return None
            t0 = time.monotonic()
            sh(['dd', 'if=' + path, 'of=/dev/null', 'bs=1M'],
               60 + size / (10 * MiB))
            return size / (time.monotonic() - t0)

        res = {'xc': [], 'bc': [], 'xw': [], 'bw': []}
        for i in range(self.cfg['runs']):
            if not self.runs_fit(i, 4 + 4 * size / (150 * MiB), 'row 6'):
                break
            for kind in (('x', 'b') if i % 2 == 0 else ('b', 'x')):
                path = inb if kind == 'x' else stored
                c = rd(path, True)
                if c is not None:
                    res[kind + 'c'].append(c)
                res[kind + 'w'].append(rd(path, False))
        cold = bool(res['xc'])
        if not cold:
            self.note('row 6: cannot drop caches (not root?): warm only')
        if cold:
            self.add(row='6a', label=label + ', caches dropped',
                     x=fmt_rate(median(res['xc'])),
                     b=fmt_rate(median(res['bc'])) + ' (data_dir/inbox/<id>)',
                     ratio=median(res['xc']) / median(res['bc']),
                     target=0.8, n=len(res['xc']))
        self.add(row='6b', label=label + ', warm page cache',
                 x=fmt_rate(median(res['xw'])),
                 b=fmt_rate(median(res['bw'])) + ' (data_dir/inbox/<id>)',
                 ratio=median(res['xw']) / median(res['bw']),
                 target=None if cold else 0.8, n=len(res['xw']))
        self.details.append('row 6: MiB/s %s' % dict(
            (k, [round(v / MiB) for v in vs]) for k, vs in res.items()))
        self.raw['row6'] = res
        os.unlink(inb)
        self.row2_inbox = None

    def row5(self, alice, bob):
        n_big, n_small, fsz = (self.cfg['files'], self.cfg['files_small'],
                               self.cfg['file_size'])
        label = '%d files of %s, one cp -r into outbox → all in peer\'s ' \
            'inbox' % (n_big, fmt_size(fsz))
        self.progress('row 5: ' + label)
        outdir = alice.outbox(bob.jid)
        indir = bob.inbox(alice.jid)
        stored_dir = os.path.join(bob.data_dir, 'inbox')

        def make_tree(tag, n):
            d = os.path.join(self.root, 'tree-' + tag)
            os.makedirs(d)
            for k in range(n):
                with open(os.path.join(d, '%s-%04d' % (tag, k)), 'wb') as f:
                    f.write(os.urandom(fsz))
            return d

        def run(tag, n, label_rss, tmo):
            """Returns (files/s, local files/s, cp secs, secs, sender
            states, complete?). If not all files arrive within tmo s, the
            rate is what arrived so far, and complete is False."""
            tree = make_tree(tag, n)
            names = set(os.listdir(tree))
            base_stored = len(os.listdir(stored_dir))
            self.sync()
            complete = True
            if label_rss:
                self.sampler.set_label(label_rss)
            cpu = CpuMeter(self.cpu_procs(alice, bob))
            t0 = time.monotonic()
            cp = subprocess.Popen(['cp', '-r', tree + '/.', outdir + '/'],
                                  stdin=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            self.procs.append(cp)
            t_cp = None
            try:
                # Cheap poll on the receiver's store, then confirm on the
                # mount itself.
                while True:
                    now = time.monotonic()
                    if t_cp is None and cp.poll() is not None:
                        if cp.returncode:
                            raise RuntimeError('cp -r failed: %s'
                                               % cp.stderr.read().decode())
                        t_cp = now - t0
                    if len(os.listdir(stored_dir)) - base_stored >= n:
                        break
                    if now - t0 > tmo:
                        complete = False
                        break
                    time.sleep(0.01)
                while True:
                    now = time.monotonic()
                    have = names & set(os.listdir(indir))
                    if len(have) == n or not complete:
                        break
                    if now - t0 > tmo + 10:
                        raise TimeoutError('%d of %d files listed in %s'
                                           % (len(have), n, indir))
                    time.sleep(0.005)
                dt = now - t0
                cpu = cpu.stop()
                got = len(have)
                if not complete:
                    self.note('row 5: %s: only %d of %d files in the inbox '
                              'after %.0fs; figure is the rate so far'
                              % (tag, got, n, dt))
            finally:
                if cp.poll() is None:
                    cp.kill()
                cp.wait(10)
                self.procs.remove(cp)
                if label_rss:
                    self.sampler.set_label(None)
            states = {}
            for nm in names:
                s = self.xattr(os.path.join(outdir, nm), 'user.xmppfs.state')
                states[s] = states.get(s, 0) + 1
            if complete:
                self.wait_sender_idle(alice, 30)
            # Baseline: the same tree into a local directory.
            ld = os.path.join(self.local, 'tree-' + tag)
            os.makedirs(ld)
            self.sync()
            b0 = time.monotonic()
            sh(['cp', '-r', tree + '/.', ld + '/'], 120)
            bt = time.monotonic() - b0
            # Clean up (untimed).
            for nm in names:
                os.unlink(os.path.join(outdir, nm))
                try:
                    os.unlink(os.path.join(indir, nm))
                except FileNotFoundError:
                    if complete:
                        raise
            shutil.rmtree(ld)
            shutil.rmtree(tree)
            if not complete:
                self.wait_sender_idle(alice, 30)
            self.details.append('row 5: %s: %s' % (tag, cpu))
            return got / dt, n / bt, t_cp, dt, states, complete

        self.need(self.cfg['min_step'], 'row 5')
        fs_small = run('s', n_small, 'files-small',
                       min(60 + n_small / 5.0, self.left() - 15))
        self.details.append('row 5: %d files: %.1f files/s (cp -r took '
                            '%.2fs, all in inbox at %.2fs)' % (
                                n_small, fs_small[0], fs_small[2],
                                fs_small[3]))
        # Estimate a big run from the small one.
        per_run = 15 + 1.2 * n_big / max(fs_small[0], 1.0)
        xs, bs = [], []
        incomplete = 0
        for i in range(self.cfg['runs']):
            if i == 0:
                # Run once whatever the estimate; cut it at what is left.
                self.need(self.cfg['min_step'], 'row 5')
                tmo = min(60 + n_big / 5.0, self.left() - 20)
            elif not self.runs_fit(i, per_run, 'row 5 (%.0f s per run)'
                                   % per_run, slack=1.0):
                break
            else:
                tmo = min(60 + n_big / 5.0, self.left() - 20)
            r = run('r%d' % i, n_big, 'files-big', tmo)
            xs.append(r[0])
            bs.append(r[1])
            incomplete += not r[5]
            per_run = 10 + r[3] * 1.05
            self.details.append(
                'row 5: run %d: %.1f files/s (cp -r into outbox took %.2fs,'
                ' %s at %.2fs; sender states %s); local cp -r '
                '%.0f files/s' % (i, r[0], r[2],
                                  'all in inbox' if r[5] else 'STOPPED',
                                  r[3], r[4], r[1]))
        self.add(row='5', label=label, x='%s%.1f files/s' % (
                 '≤ ' if incomplete else '', median(xs)),
                 b='%.0f files/s (cp -r local)' % median(bs),
                 ratio=median(xs) / median(bs), target='≥ 200 files/s',
                 passed=median(xs) >= 200, n=len(xs))
        self.raw['row5'] = dict(x=xs, b=bs, small=fs_small[:2])

    def row7(self):
        s = self.sampler
        s.set_label(None)
        for what, small, big, sz in (
                ('S5B', 's5b-small', 's5b-big',
                 (fmt_size(self.cfg['s5b_small']), fmt_size(self.cfg['s5b']))),
                ('files', 'files-small', 'files-big',
                 ('%d files' % self.cfg['files_small'],
                  '%d files' % self.cfg['files']))):
            for role in ('sender', 'receiver'):
                a = s.peak.get((small, role))
                b = s.peak.get((big, role))
                if a is None or b is None:
                    continue
                ok = b <= RSS_LIMIT and b - a <= max(4 * MiB, a * 0.1)
                self.add(row='7', label='peak RSS %s during %s (%s vs %s)'
                         % (role, what, sz[1], sz[0]),
                         x=fmt_mib(b) + ' (%s)' % sz[1],
                         b=fmt_mib(a) + ' (%s)' % sz[0],
                         ratio=b / a, target='≤ 64 MiB, flat', passed=ok,
                         n='peak')
        self.details.append('row 7: VmHWM at the end of each phase: %s' % (
            ', '.join('%s/%s %s' % (k[0], k[1], fmt_mib(v))
                      for k, v in sorted(s.hwm.items()))))
        self.raw['row7'] = dict(
            peak=dict(('%s/%s' % k, v) for k, v in s.peak.items()),
            hwm=dict(('%s/%s' % k, v) for k, v in s.hwm.items()))

    def row3(self, p, bob):
        size = self.cfg['proxy']
        label = 'S5B via proxy65 %s, streaming phase' % fmt_size(size)
        self.progress('row 3: ' + label)
        carol = self.mount(p, 'carol', ['settle_ms=%d' % self.cfg['settle_ms'],
                                        's5b_host=none'], 'r3-carol')
        try:
            src, _ = self.make_file('src-proxy', size, 3)
            self.warmup(carol, bob, 'r3')
            tmo = 60 + size / (5 * MiB)
            xs, xe, bs = [], [], []
            for i in range(self.cfg['runs']):
                if not self.runs_fit(i, 10 + 2 * size / (40 * MiB), 'row 3'):
                    break
                for kind in (('x', 'b') if i % 2 == 0 else ('b', 'x')):
                    self.sync()
                    if kind == 'x':
                        cpu = CpuMeter(self.cpu_procs(carol, bob, p))
                        t = self.transfer(src, carol, bob, 'proxy-%d.bin' % i,
                                          size, tmo)
                        self.details.append('row 3: run %d: sending at %.2fs,'
                                            ' in inbox at %.2fs; %s' % (
                                                i, t['sending'], t['done'],
                                                cpu.stop()))
                        if t['method'] != 's5b-proxy':
                            self.note('row 3 run %d went by %s'
                                      % (i, t['method']))
                        xs.append(size / (t['done'] - t['sending']))
                        xe.append(size / t['done'])
                        os.unlink(t['out'])
                        os.unlink(t['inbox'])
                    else:
                        out = os.path.join(self.local, 'relay-%d' % i)
                        cpu = CpuMeter({'prosody': p.pid})
                        r = sh(['/usr/bin/python3',
                                os.path.join(HERE, 'proxy_relay.py'),
                                '--jid', p.jid('dave'),
                                '--password', p.password('dave'),
                                '--server', p.server, '--cafile', p.cafile,
                                '--proxy', '127.0.0.1:%d' % p.proxy_port,
                                '--proxy-jid', p.proxy_jid, '--file', src,
                                '--out', out, '--timeout', str(int(tmo))],
                               tmo + 30)
                        res = json.loads(r.stdout.decode().splitlines()[-1])
                        if not res['ok']:
                            raise RuntimeError('proxy relay baseline: %s'
                                               % res['error'])
                        bs.append(size / res['seconds'])
                        self.details.append('row 3: relay run %d: %s' % (
                            i, cpu.stop()))
                        os.unlink(out)
            self.add(row='3', label=label + ' (\'sending\' → in inbox)',
                     x=fmt_rate(median(xs)),
                     b=fmt_rate(median(bs)) + ' (raw relay via proxy65)',
                     ratio=median(xs) / median(bs), target=0.9, n=len(xs))
            self.details.append(
                'row 3: streaming MiB/s %s, end to end MiB/s %s, raw relay '
                'MiB/s %s' % ([round(v / MiB) for v in xs],
                              [round(v / MiB) for v in xe],
                              [round(v / MiB) for v in bs]))
            self.raw['row3'] = dict(x=xs, e2e=xe, b=bs)
            os.unlink(src)
        finally:
            self.unmount(carol)

    def ibb_pair(self, p, sender, bob, size, runs, tag, what):
        """Runs of xmppfs-IBB and slixpeer-IBB into bob; receiver-side
        rates (partial created -> in inbox)."""
        src, _ = self.make_file('src-ibb-' + tag, size, 4)
        tmo = 60 + size / (4 * KiB)
        xs, bs, extra = [], [], []
        pdir = os.path.join(bob.data_dir, 'partial')
        for i in range(runs):
            if not self.runs_fit(i, 10 + 2 * size / MiB if tag == 'free'
                                 else 10 + 2.5 * size / 7000, what):
                break
            for kind in (('x', 'b') if i % 2 == 0 else ('b', 'x')):
                if kind == 'x':
                    cpu = CpuMeter(self.cpu_procs(sender, bob, p))
                    t = self.transfer(src, sender, bob, 'ibb-%s-%d.bin'
                                      % (tag, i), size, tmo, rx_partial=True)
                    cpu = cpu.stop()
                    if t['method'] != 'ibb':
                        self.note('%s run %d went by %s'
                                  % (what, i, t['method']))
                    xs.append(size / (t['done'] - t.get('partial', t['sending'])))
                    extra.append('xmppfs: offered at %.2fs, partial at '
                                 '%.2fs, sending at %.2fs, in inbox at '
                                 '%.2fs; %s' % (t.get('offered', -1),
                                                t.get('partial', -1),
                                                t['sending'], t['done'],
                                                cpu))
                    os.unlink(t['out'])
                    os.unlink(t['inbox'])
                    continue
                name = 'peer-%s-%d.bin' % (tag, i)
                path = os.path.join(self.root, name)
                os.link(src, path)
                before = set(os.listdir(pdir))
                inb = os.path.join(bob.inbox(p.jid('carol')), name)
                argv = X.peer_argv(p, 'carol', resource='bench') + [
                    'send', '--to', bob.jid, '--file', path, '--method',
                    'ibb', '--timeout', str(int(tmo))]
                logf = open(os.path.join(self.root, 'slixpeer.log'), 'ab')
                sp = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=logf)
                self.procs.append(sp)
                cpu = CpuMeter({'slixpeer': sp.pid, 'receiver':
                                bob.proc.pid, 'prosody': p.pid})
                t0 = time.monotonic()
                tp = None
                try:
                    while True:
                        now = time.monotonic()
                        if tp is None and set(os.listdir(pdir)) - before:
                            tp = now
                        if os.path.exists(inb):
                            td = now
                            break
                        if sp.poll() is not None and not os.path.exists(inb):
                            time.sleep(0.2)
                            if not os.path.exists(inb):
                                raise RuntimeError(
                                    'slixpeer exited %s: %s' % (
                                        sp.returncode,
                                        sp.stdout.read().decode()))
                        if now - t0 > tmo + 20:
                            raise TimeoutError('slixpeer IBB not done')
                        time.sleep(POLL)
                    cpu = cpu.stop()
                    out, _ = sp.communicate(timeout=30)
                finally:
                    X.stop_pid(sp, 3)
                    self.procs.remove(sp)
                    logf.close()
                res = json.loads(out.decode().splitlines()[-1])
                if not res.get('ok') or res.get('method') != 'ibb':
                    self.note('%s: slixpeer result %s' % (what, res))
                bs.append(size / (td - (tp or t0)))
                extra.append('slixpeer: partial at %.2fs, in inbox at %.2fs,'
                             ' its own total %.2fs; %s' % (
                                 (tp or t0) - t0, td - t0,
                                 res.get('seconds', -1), cpu))
                os.unlink(inb)
                os.unlink(path)
        os.unlink(src)
        return xs, bs, extra

    def row4(self, p, bob):
        size = self.cfg['ibb']
        label = 'IBB %s, no rate limit, nagle off (receiver-timed)' \
            % fmt_size(size)
        self.progress('row 4: ' + label)
        dave = self.mount(p, 'dave', ['settle_ms=%d' % self.cfg['settle_ms'],
                                      'methods=ibb'], 'r4-dave')
        try:
            self.warmup(dave, bob, 'r4')
            xs, bs, extra = self.ibb_pair(p, dave, bob, size,
                                          self.cfg['runs'], 'free', 'row 4a')
            self.add(row='4a', label=label, x=fmt_rate(median(xs)),
                     b=fmt_rate(median(bs)) + ' (slixpeer IBB, 4 KiB, 1 in '
                     'flight)', ratio=median(xs) / median(bs), target=10.0,
                     n=len(xs))
            for e in extra:
                self.details.append('row 4a: ' + e)
            self.raw['row4a'] = dict(x=xs, b=bs)
        finally:
            self.unmount(dave)

    def row4_limited(self):
        size = self.cfg['ibb_limited']
        label = 'IBB %s, Debian stock c2s limit 10 kB/s (receiver-timed)' \
            % fmt_size(size)
        self.progress('row 4b: ' + label)
        self.need(25 + 3 * size / 7000, 'row 4b')
        pl = self.prosody('prosody-limits', limits=True)
        dave = bob = None
        try:
            bob = self.mount(pl, 'bob', [], 'r4b-bob')
            dave = self.mount(pl, 'dave', ['settle_ms=%d'
                                           % self.cfg['settle_ms'],
                                           'methods=ibb'], 'r4b-dave')
            xs, bs, extra = self.ibb_pair(pl, dave, bob, size, 1, 'limited',
                                          'row 4b')
            self.add(row='4b', label=label, x=fmt_rate(median(xs)),
                     b=fmt_rate(median(bs)) + ' (slixpeer IBB)',
                     ratio=median(xs) / median(bs) if xs and bs else None,
                     target='info: both capped by the server', passed=None,
                     n=len(xs))
            for e in extra:
                self.details.append('row 4b: ' + e)
            self.raw['row4b'] = dict(x=xs, b=bs)
        finally:
            for m in (dave, bob):
                if m:
                    self.unmount(m)
            pl.stop()

    # ============================================================ main

    def run(self):
        self.setup()
        p = self.prosody('prosody')
        st = {}

        def mount_pair():
            self.progress('mounting bob (receiver) and alice (sender)')
            st['bob'] = self.mount(p, 'bob', [], 'bob')
            self.sampler.watch('receiver', st['bob'].proc.pid)
            if self.rows & {2, 5, 6}:
                st['alice'] = self.mount(
                    p, 'alice', ['settle_ms=%d' % self.cfg['settle_ms']],
                    'alice')
                self.sampler.watch('sender', st['alice'].proc.pid)

        def unmount(who):
            m = st.pop(who, None)
            if m is not None:
                self.unmount(m)

        steps = []
        # Row 1 first, while nothing else of ours runs.
        if 1 in self.rows:
            steps.append(('1', 'dd into outbox', lambda: self.row1(p)))
        if self.rows & {2, 3, 4, 5, 6}:
            steps.append((None, None, mount_pair))
        if 2 in self.rows:
            steps.append(('2', 'S5B direct',
                          lambda: self.row2(st['alice'], st['bob'])))
        if 6 in self.rows:
            steps.append(('6', 'read from inbox',
                          lambda: self.row6(st['alice'], st['bob'])))
        if 3 in self.rows:
            steps.append(('3', 'S5B via proxy65',
                          lambda: self.row3(p, st['bob'])))
        if 4 in self.rows:
            steps.append(('4a', 'IBB', lambda: self.row4(p, st['bob'])))
        # Row 5 gets what is left, minus a reserve for row 4b.
        if 5 in self.rows:
            steps.append(('5', 'many small files', lambda: self.row5(
                st['alice'], st['bob'])))
        if 7 in self.rows:
            steps.append(('7', 'peak RSS', self.row7))
        steps.append((None, None, lambda: unmount('alice')))
        steps.append((None, None, lambda: unmount('bob')))
        if 4 in self.rows:
            steps.append(('4b', 'IBB with limits', self.row4_limited))
        for row, what, fn in steps:
            # Keep time for row 4b (and the unmounts) while the others run.
            self.reserve = 0.0
            if 4 in self.rows and row not in ('4b', None):
                self.reserve = (8 if self.a.quick else 20) \
                    + 3 * self.cfg['ibb_limited'] / 7000
            try:
                fn()
            except Skip as e:
                self.skip_row(row, what, str(e))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                if row is None:
                    raise
                self.add(row=row, label=what, x='FAILED', b='–', ratio=None,
                         target='', ok='FAILED', n=0)
                self.note('row %s (%s) failed: %s' % (row, what, e))
                self.details.append('row %s traceback:\n%s' % (
                    row, traceback.format_exc()))
                for m in self.mounts:
                    self.details.append('log tail of %s:\n%s'
                                        % (m.jid, X.tail(m.log_path, 15)))


# ---------------------------------------------------------------- report

def machine_info():
    cpu = '?'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        la = ' '.join(open('/proc/loadavg').read().split()[:3])
    except OSError:
        la = '?'
    try:
        mem = [l for l in open('/proc/meminfo') if l.startswith('MemTotal')]
        mem = '%.0f GiB' % (int(mem[0].split()[1]) / (1 << 20))
    except (OSError, IndexError):
        mem = '?'
    return cpu, la, mem


def git_rev():
    try:
        r = subprocess.run(['git', '-C', REPO, 'rev-parse', '--short',
                            'HEAD'], capture_output=True, timeout=10)
        rev = r.stdout.decode().strip()
        r = subprocess.run(['git', '-C', REPO, 'status', '--porcelain',
                            '--untracked-files=no'],
                           capture_output=True, timeout=10)
        return rev + ('+dirty' if r.stdout.strip() else '')
    except Exception:
        return '?'


def report(b, started, la_start):
    cpu, la_end, mem = machine_info()
    quick = b.a.quick
    out = []
    out.append('# xmppfs benchmark%s' % (' (--quick: tiny sizes, 1 run, '
                                         'no thresholds)' if quick else ''))
    out.append('')
    out.append('- date: %s' % started.strftime('%Y-%m-%d %H:%M:%S %Z'))
    out.append('- machine: %s, nproc %d, %s RAM, kernel %s %s' % (
        cpu, os.cpu_count(), mem, platform.system(), platform.release()))
    out.append('- load average: %s at start, %s at end (shared machine: '
               'compare ratios, not absolute figures)' % (la_start, la_end))
    try:
        built = datetime.datetime.fromtimestamp(
            os.path.getmtime(b.bin)).astimezone().strftime('%H:%M:%S %Z')
    except (OSError, TypeError):
        built = '?'
    out.append('- xmppfs: %s (CMAKE_BUILD_TYPE=%s, built %s), tree at git '
               '%s' % (os.path.relpath(b.bin, REPO) if b.bin else '?',
                       getattr(b, 'build_type', '?'), built, git_rev()))
    c = b.cfg
    out.append('- sizes: write %s, S5B direct %s (RSS: vs %s), proxy %s, '
               'IBB %s (limited: %s), %d+%d files of %s' % (
                   fmt_size(c['write']), fmt_size(c['s5b']),
                   fmt_size(c['s5b_small']), fmt_size(c['proxy']),
                   fmt_size(c['ibb']), fmt_size(c['ibb_limited']),
                   c['files_small'], c['files'], fmt_size(c['file_size'])))
    if not quick:
        if c['proxy'] < GiB:
            out.append('  - row 3 uses %s, not 1 GiB: Prosody\'s proxy65 '
                       'relays at ~100 MiB/s here and 2×3 GiB would not fit '
                       'the 10-minute budget (`--set proxy=%d` for 1 GiB)'
                       % (fmt_size(c['proxy']), GiB))
        if c['ibb'] < 64 * MiB:
            out.append('  - row 4a uses %s, not 64 MiB: both IBB senders run '
                       'at ~2-3 MiB/s here, 2×3×64 MiB would take ~8 min '
                       '(`--set ibb=%d`)' % (fmt_size(c['ibb']), 64 * MiB))
        out.append('  - row 4b uses %s: mod_limits caps c2s at 10 kB/s (of '
                   'base64), so both senders are capped by the server and '
                   'the ratio is ~1 by construction' % fmt_size(
                       c['ibb_limited']))
    out.append('- runs per figure: %d (median); settle_ms=%d for senders '
               'except row 1; total time %.0f s' % (
                   b.cfg['runs'], b.cfg['settle_ms'],
                   time.monotonic() - b.t_start))
    out.append('')
    out.append('| # | row | xmppfs | baseline | ratio | target | ok | N |')
    out.append('|---|---|---|---|---|---|---|---|')
    for r in b.table:
        ratio = r.get('ratio')
        tgt = r.get('target')
        ok = r.get('ok')
        if isinstance(ratio, float):
            rs = ('%.1f' % ratio if ratio >= 10 else '%.2f' % ratio
                  if ratio >= 0.01 else '%.1g' % ratio)
        else:
            rs = ratio if isinstance(ratio, str) else '–'
        if isinstance(tgt, float):
            ts = '≥ %g' % tgt + ('×' if tgt >= 10 else '')
            passed = isinstance(ratio, float) and ratio >= tgt
        else:
            ts = tgt or ''
            passed = r.get('passed')
        if ok is None:
            if quick or passed is None:
                ok = '–'
            else:
                ok = 'yes' if passed else '**NO**'
        out.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
            r['row'], r['label'], r['x'], r['b'], rs, ts, ok, r['n']))
    if b.notes:
        out.append('')
        out.append('Notes:')
        for n in b.notes:
            out.append('- ' + n)
    if b.details:
        out.append('')
        out.append('<details><summary>per-run figures</summary>')
        out.append('')
        out.append('```')
        out.extend(b.details)
        out.append('```')
        out.append('</details>')
    findings = getattr(b, 'log_findings', [])
    out.append('')
    out.append('Warnings and errors in the daemon/server logs: %s' % (
        'none' if not findings else '%d distinct' % len(findings)))
    for f in findings[:40]:
        out.append('- `%s`' % f.replace('`', "'"))
    if len(findings) > 40:
        out.append('- … %d more' % (len(findings) - 40))
    return '\n'.join(out)


def main(argv):
    ap = argparse.ArgumentParser(description='xmppfs benchmark')
    ap.add_argument('--quick', action='store_true',
                    help='tiny sizes, 1 run, no thresholds (< 60 s)')
    ap.add_argument('--rows', help='comma-separated row numbers (1-7)')
    ap.add_argument('--runs', type=int, help='runs per figure')
    ap.add_argument('--bin', help='xmppfs binary (default build-bench/'
                    'xmppfs, built if missing; or $XMPPFS_BIN)')
    ap.add_argument('--settle-ms', type=int, help='settle_ms of senders '
                    '(default 100)')
    ap.add_argument('--budget', type=float, help='time budget in seconds')
    ap.add_argument('--set', action='append', metavar='KEY=N',
                    help='override a size/count, e.g. proxy=1073741824, '
                    'ibb=67108864, files=1000')
    ap.add_argument('--tmpdir', help='parent of the temporary directory')
    ap.add_argument('--keep', action='store_true',
                    help='keep the temporary directory')
    ap.add_argument('--json', help='also write raw figures to this file')
    a = ap.parse_args(argv)

    def on_signal(signum, frame):
        raise KeyboardInterrupt('signal %d' % signum)
    signal.signal(signal.SIGTERM, on_signal)

    started = datetime.datetime.now().astimezone()
    la_start = machine_info()[1]
    b = Bench(a)
    rc = 0
    try:
        b.run()
    except KeyboardInterrupt as e:
        b.note('interrupted: %s' % (e or 'SIGINT'))
        rc = 130
    except Exception as e:
        b.note('aborted: %s' % e)
        b.details.append(traceback.format_exc())
        rc = 1
    finally:
        b.teardown()
    print(report(b, started, la_start), flush=True)
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(dict(table=b.table, raw=b.raw, notes=b.notes,
                           cfg=b.cfg), f, indent=1, default=str)
    if rc == 0 and any(r.get('ok') == 'FAILED' for r in b.table):
        rc = 1
    return rc


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
