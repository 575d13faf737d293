"""The command line of the real xmppfs binary, as a user meets it.

What is checked (DESIGN.md "Command line", docs/xmppfs.1, README.md):

- start-up failures: one line on stderr ("xmppfs: ...") naming the cause
  and the fix, a non-zero exit (1; 2 for usage errors), nothing mounted and
  no daemon left behind -- in the foreground (-f) and daemonized (the child
  reports through the parent, which exits 1);
- an unreachable server mounts anyway with a warning (exit 0), files wait;
- password sources and their order (password_file, $XMPPFS_PASSWORD,
  password_command), and that the password is never in /proc/PID/cmdline
  nor in the log, even with -d;
- the config file ($XDG_CONFIG_HOME/xmppfs/config): sets options, loses to
  the command line, a bad line is reported as path:line: message;
- --help (every option with its default) and --version;
- the effect of each option on a real transfer alice -> bob: resource,
  settle_ms, methods, s5b_host, proxy, accept, max_size, on_receive;
- `xmppfs status` (table, --json, --watch driven in tmux);
- mounting through mount(8)/mount.fuse3 and an fstab line (mount -T);
- SIGTERM/SIGINT to a foreground daemon: clean unmount, exit 0.

Every wait is bounded. Run:
    /usr/bin/python3 -m pytest -q tests/integration/test_cli.py
(XMPPFS_BIN=... to pick a binary).
"""

import base64
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import time
import uuid

import pytest

import xfsutil
from xfsutil import (make_ca_and_cert, make_file, md5_file, peer_send, tail,
                     wait_for)

ALICE = 'alice@localhost'
BOB = 'bob@localhost'
EVE = 'eve@localhost'

TERMINAL = ('sent', 'rejected', 'failed', 'cancelled')
XFER_TIMEOUT = 40


# ---------------------------------------------------------------- helpers

@pytest.fixture
def binary():
    reason = xfsutil.fuse_missing_reason()
    if reason:
        pytest.skip(reason)
    b = xfsutil.find_xmppfs_bin()
    if b is None:
        pytest.skip('xmppfs binary not found')
    return b


def clean_env(tmp_path, **extra):
    """The environment for a run of xmppfs: no $XMPPFS_PASSWORD, an empty
    config directory (so no user config interferes) unless given."""
    env = dict(os.environ)
    env.pop('XMPPFS_PASSWORD', None)
    cfg = tmp_path / 'xdg-config-empty'
    cfg.mkdir(exist_ok=True)
    env['XDG_CONFIG_HOME'] = str(cfg)
    env.setdefault('ASAN_OPTIONS', 'detect_leaks=1:abort_on_error=0')
    env.update(extra)
    return env


def fixture_env(tmp_path, **extra):
    """env= for the xmppfs fixture: the empty config directory plus extra."""
    cfg = tmp_path / 'xdg-config-empty'
    cfg.mkdir(exist_ok=True)
    e = {'XDG_CONFIG_HOME': str(cfg)}
    e.update(extra)
    return e


_counter = [0]


def account_opts(prosody, tmp_path, name='alice', password=None, **over):
    """-o options for `name` on the test server: server, cafile,
    password_file (a fresh file), data_dir (a fresh directory), settle_ms.
    over: k=None drops an option."""
    _counter[0] += 1
    n = _counter[0]
    jid = prosody.jid(name)
    pw = password if password is not None else prosody.accounts[jid]
    pwfile = tmp_path / ('%s-%d.pw' % (name, n))
    pwfile.write_text(pw + '\n')
    os.chmod(pwfile, 0o600)
    o = {'server': prosody.server, 'cafile': prosody.cafile,
         'password_file': str(pwfile),
         'data_dir': str(tmp_path / ('%s-data-%d' % (name, n))),
         'settle_ms': '200'}
    o.update(over)
    return o


def olist(o):
    return ','.join(k if v is True else '%s=%s' % (k, v)
                    for k, v in o.items() if v is not None)


def new_mnt(tmp_path, tag):
    _counter[0] += 1
    p = tmp_path / ('mnt-%s-%d' % (tag, _counter[0]))
    p.mkdir()
    return str(p)


def run_xfs(binary, args, env, timeout=40, cwd=None):
    """Run xmppfs with stdin from /dev/null and no controlling terminal
    (a new session, so /dev/tty cannot be opened). Returns a
    CompletedProcess with text stdout/stderr; returncode None when it was
    still running after `timeout` s (then it got SIGTERM, which unmounts
    a foreground xmppfs, and SIGKILL 5 s later)."""
    argv = [binary] + list(args)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, cwd=cwd, start_new_session=True,
                         universal_newlines=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = None
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            out, err = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate(timeout=5)
        err = (err or '') + '\n[still running after %ss: terminated]' % timeout
    return subprocess.CompletedProcess(argv, rc, out, err)


def procs_with(s):
    """pids whose command line contains s (a unique mount point path)."""
    out = []
    key = s.encode()
    for p in os.listdir('/proc'):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % p, 'rb') as f:
                cl = f.read()
        except OSError:
            continue
        if key in cl:
            out.append(int(p))
    return out


def mount_count(path):
    """How many mounts sit on path (stacked mounts count each)."""
    n = 0
    with open('/proc/self/mountinfo') as f:
        for l in f:
            if l.split()[4] == path:
                n += 1
    return n


def xfs_lines(text):
    """The lines xmppfs itself prints for the user ("xmppfs: ...");
    in the foreground, log lines (timestamped) go to stderr too."""
    return [l for l in text.splitlines() if l.startswith('xmppfs: ')]


def xattr(path, name):
    try:
        return os.getxattr(path, 'user.xmppfs.' + name).decode()
    except OSError as e:
        if e.errno == errno.ENODATA:
            return ''
        raise


def xattrs(path):
    return dict((k, xattr(path, k))
                for k in ('state', 'progress', 'error', 'peer', 'method'))


def diag(*mounts, lines=25):
    return '\n'.join('--- %s (%s) log tail:\n%s'
                     % (m.jid, m.log_path, tail(m.log_path, lines))
                     for m in mounts)


def wait_state(path, want, timeout=XFER_TIMEOUT, mounts=()):
    """Wait until outbox file `path` is in state `want`; fail at once (after
    1 s of persistence) on another terminal state."""
    deadline = time.monotonic() + timeout
    bad_since = None
    last = {}
    while True:
        last = xattrs(path)
        st = last['state']
        if st == want:
            return last
        now = time.monotonic()
        if st in TERMINAL:
            bad_since = bad_since or now
            if now - bad_since > 1.0:
                pytest.fail('%s: state %r, want %r (%r)\n%s'
                            % (path, st, want, last, diag(*mounts)))
        else:
            bad_since = None
        if now > deadline:
            pytest.fail('%s: still %r after %ss, want %r (%r)\n%s'
                        % (path, st, timeout, want, last, diag(*mounts)))
        time.sleep(0.05)


def inbox_names(m, sender):
    try:
        return sorted(os.listdir(m.inbox(sender)))
    except FileNotFoundError:
        return []


def wait_inbox(m, sender, names, timeout=XFER_TIMEOUT, mounts=()):
    names = set(names)
    try:
        wait_for(lambda: names <= set(inbox_names(m, sender)), timeout,
                 interval=0.05)
    except TimeoutError:
        pytest.fail('%s inbox/%s: have %r, want %r after %ss\n%s'
                    % (m.jid, sender, inbox_names(m, sender), sorted(names),
                       timeout, diag(m, *mounts)))


def outdir(m, jid):
    d = m.outbox(jid)
    try:
        os.mkdir(d)
    except FileExistsError:
        pass
    return d


def put(m, jid, name, data):
    """Write a file into m's outbox/<jid>/ (open, write, close)."""
    p = os.path.join(outdir(m, jid), name)
    with open(p, 'wb') as f:
        f.write(data)
    return p


def wait_exit(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture
def reaper():
    """Mount points that a test mounted outside the xmppfs fixture
    (daemonized runs, mount(8), stacked mounts): unmounted at teardown;
    daemons whose command line names them get 10 s to exit, then are
    SIGKILLed by pid."""
    paths = []
    yield paths
    for p in paths:
        for _ in range(10):
            if mount_count(p) == 0:
                break
            r = xfsutil.fusermount_u(p)
            if r.returncode != 0:
                xfsutil.fusermount_u(p, lazy=True)
        try:
            wait_for(lambda: not procs_with(p), 10)
        except TimeoutError:
            for pid in procs_with(p):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def assert_no_daemon(mnt, timeout=5):
    try:
        wait_for(lambda: not procs_with(mnt), timeout)
    except TimeoutError:
        pytest.fail('a process naming %s is still running after the failed '
                    'start: %r' % (mnt, procs_with(mnt)))


# ---------------------------------------------------------------- 1. failures

def _failure_case(case, prosody, tmp_path, ro_mounts):
    """(jid, options, mount point, env extra, want rc, words the one line
    must contain (lower case))."""
    mnt = new_mnt(tmp_path, case)
    jid = ALICE
    env = {}
    if case == 'wrong_password':
        o = account_opts(prosody, tmp_path, password='not-the-password')
        return jid, o, mnt, env, 1, ['password']
    if case == 'no_cafile':
        o = account_opts(prosody, tmp_path, cafile=None)
        return jid, o, mnt, env, 1, ['certificate', 'cafile']
    if case == 'other_ca':
        ca, _, _ = make_ca_and_cert(str(tmp_path / 'other-ca'))
        o = account_opts(prosody, tmp_path, cafile=ca)
        return jid, o, mnt, env, 1, ['certificate', 'cafile']
    if case == 'unknown_host':
        o = account_opts(prosody, tmp_path, server='nonexistent.invalid')
        return jid, o, mnt, env, 1, ['unknown host', 'nonexistent.invalid',
                                     'server=']
    if case == 'mnt_missing':
        o = account_opts(prosody, tmp_path)
        missing = os.path.join(mnt, 'no-such-dir')
        return jid, o, missing, env, 1, ['no-such-dir', 'no such file']
    if case == 'mnt_not_dir':
        o = account_opts(prosody, tmp_path)
        f = os.path.join(str(tmp_path), 'plain-file-%d' % _counter[0])
        with open(f, 'w') as fh:
            fh.write('x')
        return jid, o, f, env, 1, ['not a directory']
    if case == 'data_dir_file':
        f = tmp_path / ('data-is-a-file-%d' % _counter[0])
        f.write_text('x')
        o = account_opts(prosody, tmp_path, data_dir=str(f))
        return jid, o, mnt, env, 1, ['data director', str(f), 'data_dir=']
    if case == 'data_dir_readonly':
        ro = tmp_path / ('ro-%d' % _counter[0])
        ro.mkdir()
        subprocess.run(['mount', '--bind', str(ro), str(ro)], check=True,
                       timeout=10)
        ro_mounts.append(str(ro))
        subprocess.run(['mount', '-o', 'remount,bind,ro', str(ro)],
                       check=True, timeout=10)
        o = account_opts(prosody, tmp_path, data_dir=str(ro / 'data'))
        return jid, o, mnt, env, 1, ['data director', 'read-only',
                                     'data_dir=']
    if case == 'cafile_missing':
        f = str(tmp_path / 'no-such-ca.pem')
        o = account_opts(prosody, tmp_path, cafile=f)
        return jid, o, mnt, env, 1, ['cafile', f]
    if case == 'cafile_garbage':
        f = tmp_path / ('garbage-ca-%d.pem' % _counter[0])
        f.write_text('this is not a certificate\n')
        o = account_opts(prosody, tmp_path, cafile=str(f))
        return jid, o, mnt, env, 1, ['cafile', str(f)]
    if case == 'unknown_domain':
        # No server=: the JID's domain is looked up (SRV, then A/AAAA).
        o = account_opts(prosody, tmp_path, server=None)
        return ('alice@nonexistent.invalid', o, mnt, env, 1,
                ['nonexistent.invalid'])
    if case == 'password_file_missing':
        f = str(tmp_path / 'no-such-pw-file')
        o = account_opts(prosody, tmp_path, password_file=f)
        # The next sources are not tried: a right $XMPPFS_PASSWORD is set.
        return jid, o, mnt, {'XMPPFS_PASSWORD': 'alice-pw'}, 1, [
            'password_file', f]
    if case == 'password_file_empty':
        f = tmp_path / ('empty-pw-%d' % _counter[0])
        f.write_text('\n')
        o = account_opts(prosody, tmp_path, password_file=str(f))
        return jid, o, mnt, {'XMPPFS_PASSWORD': 'alice-pw'}, 1, [
            'password_file', str(f), 'empty']
    if case == 'no_password':
        o = account_opts(prosody, tmp_path, password_file=None)
        return jid, o, mnt, env, 1, ['password', 'password_file',
                                     'xmppfs_password', 'password_command']
    raise AssertionError(case)


FAILURES = ['wrong_password', 'no_cafile', 'other_ca', 'cafile_missing',
            'cafile_garbage', 'unknown_host',
            'unknown_domain', 'mnt_missing', 'mnt_not_dir', 'data_dir_file',
            'data_dir_readonly', 'password_file_missing',
            'password_file_empty', 'no_password']


@pytest.fixture
def ro_mounts():
    l = []
    yield l
    for p in l:
        subprocess.run(['umount', p], timeout=10)


@pytest.mark.parametrize('mode', ['fg', 'daemon'])
@pytest.mark.parametrize('case', FAILURES)
def test_startup_failure(binary, prosody, tmp_path, reaper, ro_mounts, case,
                         mode):
    """Each start-up failure: exit 1, exactly one 'xmppfs: ...' line naming
    the cause (and the option that fixes it), nothing mounted, no daemon
    left. Daemonized (no -f), the child's verdict comes through the parent
    and stderr holds nothing but that line."""
    jid, o, mnt, envx, want_rc, words = _failure_case(case, prosody,
                                                      tmp_path, ro_mounts)
    reaper.append(mnt)
    before = mount_count(mnt) if os.path.isdir(mnt) else 0
    args = (['-f'] if mode == 'fg' else []) + ['-o', olist(o), jid, mnt]
    t0 = time.monotonic()
    r = run_xfs(binary, args, clean_env(tmp_path, **envx), timeout=12)
    took = time.monotonic() - t0
    what = ('%s %s\nrc=%s\nstderr:\n%s\nstdout:\n%s'
            % (binary, ' '.join(args), r.returncode, r.stderr, r.stdout))
    lines = xfs_lines(r.stderr)
    if mode == 'daemon':
        # Nothing but the one line: logs of the child go to syslog.
        lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == want_rc, what
    assert len(lines) == 1, 'want exactly one message line\n' + what
    low = lines[0].lower()
    assert low.startswith('xmppfs: '), what
    for w in words:
        assert w.lower() in low, '%r not in the message\n%s' % (w, what)
    assert 'warning' not in low, what
    assert took < 30, 'took %.1fs to fail\n%s' % (took, what)
    if os.path.isdir(mnt):
        assert mount_count(mnt) == before, 'something got mounted\n' + what
    assert_no_daemon(mnt)


BAD_OPTIONS = [
    ('bogus=1', 'bogus'),
    ('settle_ms=abc', 'settle_ms'),
    ('settle_ms=3600001', 'settle_ms'),
    ('max_size=12Q', 'max_size'),
    ('max_size=-5', 'max_size'),
    ('methods=ftp', 'methods'),
    ('methods=s5b:s5b', 'methods'),
    ('accept=maybe', 'accept'),
    ('server=host:99999', 'server'),
    ('server=host:0', 'server'),
    ('settle_ms', 'settle_ms'),          # a value is needed
]


@pytest.mark.parametrize('mode', ['fg', 'daemon'])
@pytest.mark.parametrize('opt,name', BAD_OPTIONS,
                         ids=[b[0] for b in BAD_OPTIONS])
def test_bad_option(binary, tmp_path, reaper, opt, name, mode):
    """A usage error: exit 2, one line naming the option, nothing mounted,
    before anything else (no password or server needed)."""
    mnt = new_mnt(tmp_path, 'badopt')
    reaper.append(mnt)
    pw = tmp_path / 'pw'
    pw.write_text('x\n')
    args = (['-f'] if mode == 'fg' else []) + [
        '-o', 'server=127.0.0.1:1,password_file=%s,data_dir=%s' % (
            pw, tmp_path / 'd'), '-o', opt, ALICE, mnt]
    r = run_xfs(binary, args, clean_env(tmp_path), timeout=20)
    what = ('%s\nrc=%s\nstderr:\n%s' % (' '.join(args), r.returncode,
                                        r.stderr))
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2, what
    assert len(lines) == 1, what
    assert lines[0].startswith('xmppfs: '), what
    assert "'%s'" % name in lines[0] or ' %s' % name in lines[0], what
    if name == 'bogus':
        assert "unknown option 'bogus'" in lines[0], what
    assert mount_count(mnt) == 0, what
    assert not os.path.exists(tmp_path / 'd'), \
        'the data directory was created for a usage error\n' + what
    assert_no_daemon(mnt)


def test_usage_errors(binary, tmp_path):
    """Unknown flag, missing arguments, a bad JID: exit 2, one line."""
    mnt = new_mnt(tmp_path, 'usage')
    env = clean_env(tmp_path)
    for args, word in ((['--frobnicate', ALICE, mnt], '--frobnicate'),
                       ([ALICE], 'MOUNTPOINT'),
                       ([], 'MOUNTPOINT'),
                       (['not a jid', mnt], 'not a jid'),
                       ([ALICE, mnt, 'extra'], 'extra'),
                       (['-o'], '-o')):
        r = run_xfs(binary, args, env, timeout=10)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        what = '%r: rc=%s stderr=%r' % (args, r.returncode, r.stderr)
        assert r.returncode == 2, what
        assert len(lines) == 1 and lines[0].startswith('xmppfs: '), what
        assert word in lines[0], what
    assert mount_count(mnt) == 0


def test_mountpoint_busy(binary, prosody, xmppfs, tmp_path, reaper):
    """A mount point already mounted by another xmppfs: exit 1, one line,
    the existing mount untouched and nothing stacked on it (foreground and
    daemonized)."""
    a = xmppfs('alice', env=fixture_env(tmp_path))
    reaper.append(a.path)
    assert mount_count(a.path) == 1
    problems = []
    for mode in ('fg', 'daemon'):
        o = account_opts(prosody, tmp_path, name='carol')
        args = (['-f'] if mode == 'fg' else []) + [
            '-o', olist(o), 'carol@localhost', a.path]
        p = subprocess.Popen([binary] + args, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=clean_env(tmp_path), start_new_session=True,
                             universal_newlines=True)
        # Wait for the exit, or for a mount stacked on top (the bug).
        deadline = time.monotonic() + 15
        stacked = 1
        while time.monotonic() < deadline and p.poll() is None:
            stacked = max(stacked, mount_count(a.path))
            if stacked > 1:
                time.sleep(0.5)
                break
            time.sleep(0.05)
        rc = p.poll()
        stacked = max(stacked, mount_count(a.path))
        # Undo a stacked mount (the top one) before anything else.
        if stacked > 1:
            xfsutil.fusermount_u(a.path)
            wait_for(lambda: mount_count(a.path) == 1, 10)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            if wait_exit(p, 10) is None:
                p.kill()
        if mode == 'daemon' and stacked > 1:
            wait_for(lambda: len(procs_with(a.path)) <= 1, 10)
        out, err = p.communicate(timeout=10)
        lines = [l for l in (xfs_lines(err) if mode == 'fg'
                             else err.splitlines()) if l.strip()]
        what = ('%s: %s\nrc=%s, mounts on the path while it ran: %d\n'
                'stderr:\n%s' % (mode, ' '.join(args), rc, stacked, err))
        if not (rc == 1 and stacked == 1 and len(lines) == 1
                and 'mount' in lines[0].lower()):
            problems.append(what)
    # The first mount still works.
    assert {'inbox', 'outbox', 'status'} <= set(os.listdir(a.path))
    a.wait_online(10)
    assert not problems, '\n\n'.join(problems)


def test_data_dir_in_use(binary, prosody, xmppfs, tmp_path, reaper):
    """A second xmppfs on the data directory of a running one waits up to
    5 s for its lock, then fails with one line naming the directory."""
    a = xmppfs('alice', env=fixture_env(tmp_path))
    mnt = new_mnt(tmp_path, 'inuse')
    reaper.append(mnt)
    o = account_opts(prosody, tmp_path, data_dir=a.data_dir)
    t0 = time.monotonic()
    r = run_xfs(binary, ['-f', '-o', olist(o), ALICE, mnt],
                clean_env(tmp_path), timeout=30)
    took = time.monotonic() - t0
    lines = xfs_lines(r.stderr)
    what = 'rc=%s took %.1fs stderr=%r' % (r.returncode, took, r.stderr)
    assert r.returncode == 1, what
    assert len(lines) == 1, what
    assert a.data_dir in lines[0] and 'in use' in lines[0], what
    assert 'data_dir=' in lines[0], what
    assert 4.0 <= took < 15, what
    assert mount_count(mnt) == 0
    assert a.running() and a.link() == b'online'


def test_default_data_dir(xmppfs, tmp_path):
    """Without data_dir=: $XDG_DATA_HOME/xmppfs/<jid>/, mode 0700."""
    xdg = tmp_path / 'xdg-data'
    m = xmppfs('alice', data_dir=None,
               env=fixture_env(tmp_path, XDG_DATA_HOME=str(xdg)))
    dd = xdg / 'xmppfs' / ALICE
    assert dd.is_dir(), list(xdg.rglob('*'))
    assert stat.S_IMODE(os.stat(str(dd)).st_mode) == 0o700
    assert (dd / 'state.db').exists()
    put(m, BOB, 'dd.txt', b'x')
    m.unmount()
    assert 'spool' in os.listdir(str(dd))
    assert len(os.listdir(str(dd / 'spool'))) == 1


def test_password_prompt_tty(binary, prosody, tmp_path, reaper,
                             tmux_session):
    """No password_file, no $XMPPFS_PASSWORD, no password_command, on a
    terminal: xmppfs asks on /dev/tty without echo, and logs in."""
    mnt = new_mnt(tmp_path, 'tty')
    reaper.append(mnt)
    o = account_opts(prosody, tmp_path, password_file=None)
    cfg = tmp_path / 'xdg-config-empty'
    cfg.mkdir(exist_ok=True)
    cmd = ('env -u XMPPFS_PASSWORD XDG_CONFIG_HOME=%s %s -f -o %s %s %s; '
           'echo EXITED $?; sleep 30' % (cfg, binary, olist(o), ALICE, mnt))
    r = subprocess.run(['tmux', 'new-session', '-d', '-s', tmux_session,
                        '-x', '200', '-y', '40', cmd], timeout=10)
    assert r.returncode == 0

    def screen():
        return subprocess.run(['tmux', 'capture-pane', '-p', '-t',
                               tmux_session], stdout=subprocess.PIPE,
                              timeout=10, universal_newlines=True).stdout
    try:
        wait_for(lambda: 'Password for %s:' % ALICE in screen(), 10)
    except TimeoutError:
        pytest.fail('no prompt:\n' + screen())
    subprocess.run(['tmux', 'send-keys', '-t', tmux_session, '-l',
                    'alice-pw'], timeout=10)
    subprocess.run(['tmux', 'send-keys', '-t', tmux_session, 'Enter'],
                   timeout=10)
    try:
        wait_for(lambda: os.path.ismount(mnt), 20)
        wait_for(lambda: os.getxattr(mnt, 'user.xmppfs.link') == b'online',
                 15)
    except TimeoutError:
        pytest.fail('not mounted/online after the prompt:\n' + screen())
    s = screen()
    assert 'alice-pw' not in s, 'the password was echoed:\n' + s
    xfsutil.fusermount_u(mnt)
    try:
        wait_for(lambda: 'EXITED' in screen(), 10)
    except TimeoutError:
        pytest.fail('xmppfs did not exit after unmount:\n' + screen())
    assert 'EXITED 0' in screen(), screen()


def test_daemonized_success(binary, prosody, tmp_path, reaper):
    """Without -f: the parent returns 0 once the mount is up and online;
    fusermount3 -u ends the daemon."""
    mnt = new_mnt(tmp_path, 'daemon')
    reaper.append(mnt)
    o = account_opts(prosody, tmp_path)
    t0 = time.monotonic()
    r = run_xfs(binary, ['-o', olist(o), ALICE, mnt], clean_env(tmp_path),
                timeout=40)
    what = 'rc=%s stderr=%r' % (r.returncode, r.stderr)
    assert r.returncode == 0, what
    assert r.stderr.strip() == '', what
    assert time.monotonic() - t0 < 20, what
    assert os.path.ismount(mnt), what
    pids = procs_with(mnt)
    assert len(pids) == 1, pids
    # Already logged in when the parent returned.
    assert os.getxattr(mnt, 'user.xmppfs.link') == b'online'
    assert {'inbox', 'outbox', 'status'} <= set(os.listdir(mnt))
    # Detached: its own session, not a child of ours.
    with open('/proc/%d/stat' % pids[0]) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    assert int(fields[1]) != os.getpid()          # ppid
    assert int(fields[3]) == pids[0]              # session leader (setsid)
    r = xfsutil.fusermount_u(mnt)
    assert r.returncode == 0, r.stdout
    wait_for(lambda: not procs_with(mnt), 10,
             msg='daemon still running after fusermount3 -u')
    assert not os.path.ismount(mnt)


def test_relative_paths_daemonized(binary, prosody, tmp_path, reaper):
    """Relative paths (mount point, data_dir, cafile, password_file) mean
    the same with and without -f: relative to the directory xmppfs was
    started in, although the daemon changes to /."""
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copy(prosody.cafile, str(work / 'ca.pem'))
    (work / 'pw').write_text('alice-pw\n')
    (work / 'mnt').mkdir()
    reaper.append(str(work / 'mnt'))
    rel = 'xfs-rel-data-%s' % uuid.uuid4().hex[:10]
    try:
        o = {'server': prosody.server, 'cafile': 'ca.pem',
             'password_file': 'pw', 'data_dir': rel}
        r = run_xfs(binary, ['-o', olist(o), ALICE, 'mnt'],
                    clean_env(tmp_path), timeout=40, cwd=str(work))
        what = 'rc=%s stderr=%r' % (r.returncode, r.stderr)
        assert r.returncode == 0, what
        assert os.path.ismount(str(work / 'mnt')), what
        problems = []
        if r.stderr.strip():
            problems.append('stderr not empty: %r' % r.stderr)
        link = os.getxattr(str(work / 'mnt'), 'user.xmppfs.link')
        if link != b'online':
            problems.append('link %r (cafile=ca.pem read after chdir /?)'
                            % link)
        if not (work / rel).is_dir():
            problems.append('data_dir=%s not created in the working '
                            'directory %s' % (rel, work))
        if os.path.exists('/' + rel):
            problems.append('data_dir=%s was created as /%s' % (rel, rel))
        assert not problems, '\n'.join(problems)
    finally:
        xfsutil.fusermount_u(str(work / 'mnt'))
        try:
            wait_for(lambda: not procs_with(str(work / 'mnt')), 10)
        except TimeoutError:
            pass
        if os.path.isdir('/' + rel):
            shutil.rmtree('/' + rel, ignore_errors=True)


def test_generic_mount_options(xmppfs, tmp_path):
    """The generic options mount(8) and fstab hand along are accepted
    and ignored; 'ro' makes the mount read-only (xmppfs(1))."""
    m = xmppfs('alice', env=fixture_env(tmp_path), rw=True, nosuid=True,
               nodev=True, noatime=True, _netdev=True, nofail=True,
               defaults=True, noauto=True, user=True, allow_other=True,
               default_permissions=True)
    p = put(m, BOB, 'generic.txt', b'g')
    assert open(p, 'rb').read() == b'g'
    m.unmount()
    m2 = xmppfs('carol', env=fixture_env(tmp_path), ro=True)
    with pytest.raises(OSError) as ei:
        put(m2, BOB, 'ro.txt', b'r')
    assert ei.value.errno == errno.EROFS
    assert os.listdir(m2.path)  # still readable


def test_unreachable_server_mounts(binary, prosody, xmppfs, tmp_path,
                                   reaper):
    """server=127.0.0.1:1: mounts anyway with one warning line, exit 0;
    a file copied in waits."""
    mnt = new_mnt(tmp_path, 'unreach')
    reaper.append(mnt)
    o = account_opts(prosody, tmp_path, server='127.0.0.1:1', cafile=None)
    t0 = time.monotonic()
    r = run_xfs(binary, ['-o', olist(o), ALICE, mnt], clean_env(tmp_path),
                timeout=60)
    took = time.monotonic() - t0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    what = 'rc=%s took %.1fs stderr=%r' % (r.returncode, took, r.stderr)
    assert r.returncode == 0, what
    assert len(lines) == 1, what
    assert lines[0].startswith('xmppfs: warning'), what
    assert '127.0.0.1:1' in lines[0], what
    assert os.path.ismount(mnt), what
    assert os.getxattr(mnt, 'user.xmppfs.link') != b'online'
    d = os.path.join(mnt, 'outbox', BOB)
    os.mkdir(d)
    p = os.path.join(d, 'later.txt')
    with open(p, 'w') as f:
        f.write('later\n')
    wait_for(lambda: xattr(p, 'state') == 'waiting', 10,
             msg='state %r' % xattr(p, 'state'))
    time.sleep(1.0)
    assert xattr(p, 'state') == 'waiting'
    xfsutil.fusermount_u(mnt)
    wait_for(lambda: not procs_with(mnt), 10)
    # The same in the foreground: the warning is printed, the mount stays.
    m = xmppfs('carol', offline=True, env=fixture_env(tmp_path))
    assert m.running() and m.mounted()
    assert any(l.startswith('xmppfs: warning') and '127.0.0.1:1' in l
               for l in m.log_text().splitlines()), tail(m.log_path)


# ---------------------------------------------------------------- 2. passwords

def _login_fails(m, timeout=30):
    rc = wait_exit(m.proc, timeout)
    assert rc == 1, 'rc=%s\n%s' % (rc, tail(m.log_path))
    assert not m.mounted()
    lines = xfs_lines(m.log_text())
    assert len(lines) == 1 and 'password' in lines[0], tail(m.log_path)


def test_password_file_beats_env(xmppfs, tmp_path):
    # Right password_file, wrong $XMPPFS_PASSWORD: logs in.
    xmppfs('alice', env=fixture_env(tmp_path, XMPPFS_PASSWORD='wrong-env'))
    # Wrong password_file, right $XMPPFS_PASSWORD: the file is used (the
    # next sources are not tried).
    m = xmppfs('alice', password='wrong-file', wait=False,
               env=fixture_env(tmp_path, XMPPFS_PASSWORD='alice-pw'))
    _login_fails(m)


def test_env_beats_password_command(xmppfs, tmp_path):
    xmppfs('alice', password_file=None, password_command='echo wrong-cmd',
           env=fixture_env(tmp_path, XMPPFS_PASSWORD='alice-pw'))
    m = xmppfs('alice', password_file=None, password_command='echo alice-pw',
               wait=False,
               env=fixture_env(tmp_path, XMPPFS_PASSWORD='wrong-env'))
    _login_fails(m)


def test_password_command_alone(xmppfs, binary, tmp_path):
    secret = tmp_path / 'secret'
    secret.write_text('alice-pw\nsecond line is ignored\n')
    m = xmppfs('alice', password_file=None,
               password_command='cat %s' % secret, env=fixture_env(tmp_path))
    assert m.link() == b'online'
    # A command that fails or prints nothing: one clear line, exit 1.
    for cmd in ('false', 'true'):
        mnt = new_mnt(tmp_path, 'pwcmd')
        r = run_xfs(binary, ['-f', '-o', 'server=127.0.0.1:1,data_dir=%s,'
                             'password_command=%s' % (tmp_path / 'd', cmd),
                             ALICE, mnt], clean_env(tmp_path), timeout=20)
        lines = xfs_lines(r.stderr)
        assert r.returncode == 1, r.stderr
        assert len(lines) == 1 and 'password_command' in lines[0], r.stderr
        assert mount_count(mnt) == 0


@pytest.mark.parametrize('source', ['password_file', 'env', 'command'])
def test_password_never_shown(xmppfs, prosody, tmp_path, source):
    """The password is in neither /proc/PID/cmdline (what ps shows) nor
    the log, with -d, whatever its source."""
    pw = 'Pw-%s' % uuid.uuid4().hex
    prosody.make_account('frank', pw)
    try:
        envx = {}
        opts = {}
        if source == 'env':
            envx['XMPPFS_PASSWORD'] = pw
            opts['password_file'] = None
        elif source == 'command':
            f = tmp_path / 'frank-secret'
            f.write_text(pw + '\n')
            opts['password_file'] = None
            opts['password_command'] = 'cat %s' % f
        m = xmppfs('frank', args=('-d',), env=fixture_env(tmp_path, **envx),
                   **opts)
        time.sleep(0.5)
        with open('/proc/%d/cmdline' % m.proc.pid, 'rb') as f:
            cmdline = f.read()
        ps = subprocess.run(['ps', '-ww', '-o', 'args=', '-p',
                             str(m.proc.pid)], stdout=subprocess.PIPE,
                            timeout=10).stdout
        m.unmount()
        log = m.log_text()
        assert 'logged in' in log or 'debug' in log.lower(), tail(m.log_path)
        assert pw.encode() not in cmdline, cmdline
        assert pw.encode() not in ps, ps
        assert pw not in log, 'password in %s' % m.log_path
        plain = base64.b64encode(b'\0frank\0' + pw.encode()).decode()
        assert plain not in log, 'SASL PLAIN blob in %s' % m.log_path
        assert base64.b64encode(pw.encode()).decode() not in log
    finally:
        prosody.make_account('frank', 'frank-pw')


# ---------------------------------------------------------------- 3. config

def _write_config(tmp_path, text):
    d = tmp_path / 'xdg-config'
    (d / 'xmppfs').mkdir(parents=True, exist_ok=True)
    p = d / 'xmppfs' / 'config'
    p.write_text(text)
    return str(d), str(p)


def test_config_file(xmppfs, prosody, tmp_path):
    """The config file sets options (cafile, resource come only from it);
    the command line wins (server, password_file in the file are wrong)."""
    wrong = tmp_path / 'wrong.pw'
    wrong.write_text('wrong\n')
    cfgdir, _ = _write_config(tmp_path, (
        '# xmppfs options, one per line\n'
        '   # an indented comment\n'
        '\n'
        'cafile = %s\n'
        'resource=from-config\n'
        '\tsettle_ms   =   300\n'
        'password_file = %s\n'
        'server = 127.0.0.1:1\n'
        'on_receive = echo "a, b; c" > /dev/null\n'
        % (prosody.cafile, wrong)))
    b = xmppfs('bob', env={'XDG_CONFIG_HOME': cfgdir}, cafile=None,
               settle_ms=None)
    assert b.link() == b'online'
    # resource= from the file: what alice sees as the peer.
    a = xmppfs('alice', env=fixture_env(tmp_path))
    p = put(a, BOB, 'cfg.txt', b'config test\n')
    x = wait_state(p, 'sent', mounts=(a, b))
    assert x['peer'] == BOB + '/from-config', x


def test_config_cli_resource_wins(xmppfs, prosody, tmp_path):
    cfgdir, _ = _write_config(tmp_path, 'resource = from-config\n')
    b = xmppfs('bob', env={'XDG_CONFIG_HOME': cfgdir},
               resource='from-cli')
    a = xmppfs('alice', env=fixture_env(tmp_path))
    p = put(a, BOB, 'cli.txt', b'cli wins\n')
    x = wait_state(p, 'sent', mounts=(a, b))
    assert x['peer'] == BOB + '/from-cli', x


@pytest.mark.parametrize('line,word', [
    ('settle_ms = soon', 'settle_ms'),
    ('bogus = 1', 'bogus'),
    ('accept = everyone', 'accept'),
    ('allow_other', 'allow_other'),     # mount options: not in the file
    ('resource =', 'resource'),
])
def test_config_bad_line(binary, tmp_path, line, word):
    cfgdir, path = _write_config(tmp_path, '# comment\n\n%s\n' % line)
    mnt = new_mnt(tmp_path, 'cfgbad')
    pw = tmp_path / 'pw'
    pw.write_text('x\n')
    r = run_xfs(binary, ['-f', '-o', 'server=127.0.0.1:1,password_file=%s,'
                         'data_dir=%s' % (pw, tmp_path / 'd'), ALICE, mnt],
                clean_env(tmp_path, XDG_CONFIG_HOME=cfgdir), timeout=20)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    what = 'rc=%s stderr=%r' % (r.returncode, r.stderr)
    assert r.returncode == 2, what
    assert len(lines) == 1, what
    assert lines[0].startswith('xmppfs: %s:3: ' % path), what
    assert word in lines[0][len('xmppfs: %s:3: ' % path):], what
    assert mount_count(mnt) == 0


# ---------------------------------------------------------------- 4. --help

HELP_DEFAULTS = {
    'server': "DNS SRV",
    'cafile': 'system store',
    'password_file': '$XMPPFS_PASSWORD',
    'password_command': 'none',
    'resource': 'xmppfs',
    'data_dir': '$XDG_DATA_HOME/xmppfs/<jid>',
    'settle_ms': '1000',
    'accept': 'roster',
    'max_size': 'no limit',
    'methods': 's5b:ibb',
    'proxy': 'disco',
    's5b_host': 'address of the connection',
    'on_receive': 'none',
}


def test_help_and_version(binary, tmp_path):
    env = clean_env(tmp_path)
    for flag in ('--help', '-h'):
        r = run_xfs(binary, [flag], env, timeout=10)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ''
        out = r.stdout
        assert out.startswith('usage: xmppfs'), out
        assert 'xmppfs status' in out and '-f' in out and '-d' in out
        lines = out.splitlines()
        for key, dflt in HELP_DEFAULTS.items():
            idx = [i for i, l in enumerate(lines)
                   if l.lstrip().startswith(key + '=')]
            assert len(idx) == 1, 'option %s listed %d times:\n%s' % (
                key, len(idx), out)
            i = idx[0]
            # The default in brackets, on the option's line or the next.
            text = lines[i] + '\n' + (lines[i + 1] if i + 1 < len(lines)
                                      else '')
            assert '[' in text and dflt in text[text.index('['):], \
                'default of %s (%r) not shown: %r' % (key, dflt, text)
    for flag in ('--version', '-V'):
        r = run_xfs(binary, [flag], env, timeout=10)
        assert r.returncode == 0
        assert r.stdout.startswith('xmppfs '), r.stdout
        ver = r.stdout.split()[1]
        assert ver[0].isdigit() and '.' in ver, r.stdout
        assert len(r.stdout.strip().splitlines()) == 1


# ---------------------------------------------------------------- 5. options

def pair(xmppfs, tmp_path, sopts=None, ropts=None):
    env = fixture_env(tmp_path)
    b = xmppfs('bob', env=env, **(ropts or {}))
    a = xmppfs('alice', env=env, **(sopts or {}))
    return a, b


def test_resource(xmppfs, tmp_path):
    """resource=: alice's file shows bob's resource as peer, bob's inbox
    file shows alice's."""
    a, b = pair(xmppfs, tmp_path, {'resource': 'desk'}, {'resource': 'laptop'})
    p = put(a, BOB, 'res.txt', b'resource\n')
    x = wait_state(p, 'sent', mounts=(a, b))
    assert x['peer'] == BOB + '/laptop', x
    wait_inbox(b, ALICE, ['res.txt'], mounts=(a,))
    q = os.path.join(b.inbox(ALICE), 'res.txt')
    assert xattr(q, 'peer') == ALICE + '/desk'


@pytest.mark.parametrize('settle', [300, 4000])
def test_settle_ms(xmppfs, tmp_path, settle):
    """A file is held 'waiting' for settle_ms after its last close."""
    a, b = pair(xmppfs, tmp_path, {'settle_ms': str(settle)})
    p = put(a, BOB, 'settle.txt', b'settle\n' * 10)
    # FUSE sends RELEASE after close(2) returns: the file is 'staged'
    # for the moment until then.
    wait_for(lambda: xattr(p, 'state') != 'staged', 5)
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < 20:
        st = xattr(p, 'state')
        el = time.monotonic() - t0
        if not seen or seen[-1][1] != st:
            seen.append((round(el, 2), st))
        if st in TERMINAL:
            break
        if settle > 1000 and el < (settle / 1000.0) - 0.5:
            assert st == 'waiting', (seen, diag(a, b))
            assert inbox_names(b, ALICE) == [], seen
        time.sleep(0.05)
    x = wait_state(p, 'sent', timeout=10, mounts=(a, b))
    took = [t for t, s in seen if s != 'waiting']
    first_move = took[0] if took else time.monotonic() - t0
    if settle > 1000:
        assert first_move >= settle / 1000.0 - 0.3, seen
        assert first_move < settle / 1000.0 + 10, seen
    else:
        assert first_move < 3.0, seen
    assert x['method'] == 's5b-direct'
    wait_inbox(b, ALICE, ['settle.txt'], mounts=(a,))


METHODS = [
    # id, sender options, receiver options, expected method
    ('default', {}, {}, 's5b-direct'),
    ('methods=ibb', {'methods': 'ibb'}, {}, 'ibb'),
    ('s5b_host=none', {'s5b_host': 'none'}, {}, 's5b-proxy'),
    ('proxy=none,s5b_host=none', {'proxy': 'none', 's5b_host': 'none'}, {},
     'ibb'),
    ('receiver methods=ibb', {}, {'methods': 'ibb'}, 'ibb'),
    ('methods=ibb:s5b', {'methods': 'ibb:s5b'}, {}, 's5b-direct'),
]


@pytest.mark.parametrize('sopts,ropts,method', [m[1:] for m in METHODS],
                         ids=[m[0] for m in METHODS])
def test_stream_method_options(xmppfs, tmp_path, sopts, ropts, method):
    a, b = pair(xmppfs, tmp_path, sopts, ropts)
    src = tmp_path / 'm.bin'
    digest = make_file(str(src), 200 * 1024 + 7, seed='method')
    p = os.path.join(outdir(a, BOB), 'm.bin')
    shutil.copyfile(str(src), p)
    x = wait_state(p, 'sent', mounts=(a, b))
    assert x['method'] == method, (x, diag(a, b))
    assert int(x['progress']) == 200 * 1024 + 7
    wait_inbox(b, ALICE, ['m.bin'], mounts=(a,))
    q = os.path.join(b.inbox(ALICE), 'm.bin')
    assert md5_file(q) == digest
    assert xattr(q, 'method') == method


def test_accept_none(xmppfs, tmp_path):
    a, b = pair(xmppfs, tmp_path, ropts={'accept': 'none'})
    p = put(a, BOB, 'no.txt', b'refused\n')
    x = wait_state(p, 'rejected', mounts=(a, b))
    assert x['error'].strip(), x
    time.sleep(0.5)
    assert inbox_names(b, ALICE) == []


@pytest.mark.parametrize('accept,ok', [('all', True), ('roster', False)])
def test_accept_stranger(xmppfs, prosody, tmp_path, accept, ok):
    """eve (not in the roster) offers bob a file: accepted with accept=all,
    declined with the default accept=roster."""
    b = xmppfs('bob', env=fixture_env(tmp_path), accept=accept)
    src = tmp_path / 'from-eve.txt'
    src.write_bytes(b'from eve\n' * 50)
    rc, res = peer_send(prosody, 'eve', BOB + '/xmppfs', str(src),
                        timeout=30, extra=['--no-disco'],
                        log_path=str(tmp_path / 'eve.log'))
    if ok:
        assert rc == 0 and res.get('ok'), (res, diag(b))
        wait_inbox(b, EVE, ['from-eve.txt'], timeout=10)
        assert md5_file(os.path.join(b.inbox(EVE), 'from-eve.txt')) == \
            md5_file(str(src))
    else:
        assert rc != 0 and not res.get('ok'), res
        assert 'forbidden' in (res.get('error') or ''), res
        time.sleep(0.5)
        assert inbox_names(b, EVE) == []


def test_max_size(xmppfs, tmp_path):
    """max_size=1K: 1025 bytes rejected, exactly 1024 accepted."""
    a, b = pair(xmppfs, tmp_path, ropts={'max_size': '1K'})
    big = put(a, BOB, 'big.bin', b'b' * 1025)
    x = wait_state(big, 'rejected', mounts=(a, b))
    assert x['error'].strip(), x
    edge = put(a, BOB, 'edge.bin', b'e' * 1024)
    wait_state(edge, 'sent', mounts=(a, b))
    wait_inbox(b, ALICE, ['edge.bin'], mounts=(a,))
    assert inbox_names(b, ALICE) == ['edge.bin']


def test_on_receive(xmppfs, tmp_path):
    """on_receive runs after a file is visible in inbox/ with XMPPFS_FILE,
    XMPPFS_SENDER, XMPPFS_NAME; a slow command (sleep 5) does not hold up
    the next transfer."""
    out = tmp_path / 'on_receive.out'
    cmd = ('echo "$XMPPFS_FILE $XMPPFS_SENDER $XMPPFS_NAME '
           '$(wc -c < "$XMPPFS_FILE")" >> %s; sleep 5' % out)
    a, b = pair(xmppfs, tmp_path, ropts={'on_receive': cmd})

    def lines():
        try:
            return out.read_text().splitlines()
        except FileNotFoundError:
            return []
    put(a, BOB, 'first.txt', b'1' * 11)
    wait_inbox(b, ALICE, ['first.txt'], mounts=(a,))
    wait_for(lambda: len(lines()) >= 1, 10,
             msg='on_receive output %r\n%s' % (lines(), diag(b)))
    t1 = time.monotonic()
    put(a, BOB, 'second name.txt', b'2' * 22)
    wait_inbox(b, ALICE, ['second name.txt'], timeout=10, mounts=(a,))
    wait_for(lambda: len(lines()) >= 2, 10, msg='second on_receive')
    took = time.monotonic() - t1
    assert took < 4.0, ('the second file took %.1fs: blocked by the first '
                        'on_receive (sleep 5)?' % took)
    got = lines()
    want = ['%s %s %s %d' % (os.path.join(b.inbox(ALICE), 'first.txt'),
                             ALICE, 'first.txt', 11),
            '%s %s %s %d' % (os.path.join(b.inbox(ALICE), 'second name.txt'),
                             ALICE, 'second name.txt', 22)]
    assert got == want, got
    # Mount stays healthy.
    assert b.running() and b.link() == b'online'


# ---------------------------------------------------------------- 6. status

def _status(binary, mnt, *flags):
    r = subprocess.run([binary, 'status'] + list(flags) + [mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_status_command(xmppfs, binary, tmp_path):
    a, b = pair(xmppfs, tmp_path)
    p = put(a, BOB, 'hello world.txt', b'h' * 47)
    wait_state(p, 'sent', mounts=(a, b))
    wait_inbox(b, ALICE, ['hello world.txt'], mounts=(a,))
    # Table.
    out = _status(binary, a.path)
    lines = out.splitlines()
    assert lines[0] == 'xmppfs %s online' % ALICE, out
    rows = [l for l in lines[1:] if 'hello world.txt' in l]
    assert len(rows) == 1, out
    row = rows[0]
    for w in ('out', 'sent', '[####################]', '100%', '47 B/47 B',
              's5b-direct', BOB, 'hello world.txt'):
        assert w in row, (w, out)
    # JSON, both sides.
    for m, direction, state, jid in ((a, 'out', 'sent', BOB),
                                     (b, 'in', 'received', ALICE)):
        out = _status(binary, m.path, '--json')
        objs = [json.loads(l) for l in out.splitlines()]
        assert objs, out
        for o in objs:
            assert sorted(o) == sorted(['direction', 'state', 'progress',
                                        'size', 'method', 'jid', 'name',
                                        'error']), o
        mine = [o for o in objs if o['name'] == 'hello world.txt']
        assert mine == [{'direction': direction, 'state': state,
                         'progress': 47, 'size': 47, 'method': 's5b-direct',
                         'jid': jid, 'name': 'hello world.txt',
                         'error': ''}], out
    # --watch --json: a complete set of lines every second.
    r = subprocess.run(['timeout', '-s', 'INT', '2.6', binary, 'status',
                        '--watch', '--json', a.path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10, universal_newlines=True)
    objs = [json.loads(l) for l in r.stdout.splitlines()]
    mine = [o for o in objs if o['name'] == 'hello world.txt']
    assert len(mine) >= 2 and all(o == mine[0] for o in mine), r.stdout
    assert '\033' not in r.stdout, 'screen control codes in --json output'
    # Errors: a directory that is no mount, a bad flag.
    r = subprocess.run([binary, 'status', str(tmp_path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10, universal_newlines=True)
    assert r.returncode == 1 and r.stderr.strip(), r
    r = subprocess.run([binary, 'status', '--bogus', a.path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10, universal_newlines=True)
    assert r.returncode == 2 and 'usage' in r.stderr, r


def test_status_json_rejected_error(xmppfs, binary, tmp_path):
    """A rejected file's error text reaches --json."""
    a, b = pair(xmppfs, tmp_path, ropts={'accept': 'none'})
    p = put(a, BOB, 'nope.txt', b'n')
    x = wait_state(p, 'rejected', mounts=(a, b))
    objs = [json.loads(l) for l in
            _status(binary, a.path, '--json').splitlines()]
    mine = [o for o in objs if o['name'] == 'nope.txt']
    assert len(mine) == 1 and mine[0]['state'] == 'rejected', objs
    assert mine[0]['error'] == x['error'].strip() and mine[0]['error'], \
        (mine, x)


def test_status_json_non_utf8_name(xmppfs, binary, tmp_path):
    """--json output is valid JSON (UTF-8) also for a file name that is
    not UTF-8, with quotes and backslashes."""
    m = xmppfs('alice', offline=True, env=fixture_env(tmp_path))
    d = outdir(m, BOB)
    raw = b'caf\xe9 "q"\\x.txt'
    with open(os.path.join(d.encode(), raw), 'wb') as f:
        f.write(b'x')
    wait_for(lambda: xattr(os.path.join(d, os.fsdecode(raw)), 'state')
             == 'waiting', 10)
    r = subprocess.run([binary, 'status', '--json', m.path],
                       stdout=subprocess.PIPE, timeout=10)
    assert r.returncode == 0
    try:
        text = r.stdout.decode('utf-8')
    except UnicodeDecodeError as e:
        pytest.fail('status --json is not UTF-8 (%s): %r' % (e, r.stdout))
    objs = [json.loads(l) for l in text.splitlines()]
    assert len(objs) == 1, objs
    assert objs[0]['name'].startswith('caf'), objs
    assert objs[0]['name'].endswith(' "q"\\x.txt'), objs


@pytest.fixture
def tmux_session():
    if not shutil.which('tmux'):
        pytest.skip('tmux is not installed')
    name = 'xfs-test-%d-%s' % (os.getpid(), uuid.uuid4().hex[:6])
    yield name
    subprocess.run(['tmux', 'kill-session', '-t', name],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=10)


def test_status_watch(xmppfs, binary, tmp_path, tmux_session):
    a, b = pair(xmppfs, tmp_path)
    p1 = put(a, BOB, 'one.txt', b'1' * 10)
    wait_state(p1, 'sent', mounts=(a, b))
    r = subprocess.run(['tmux', 'new-session', '-d', '-s', tmux_session,
                        '-x', '120', '-y', '30',
                        '%s status --watch %s' % (binary, a.path)],
                       timeout=10)
    assert r.returncode == 0

    def screen():
        return subprocess.run(['tmux', 'capture-pane', '-p', '-t',
                               tmux_session], stdout=subprocess.PIPE,
                              timeout=10,
                              universal_newlines=True).stdout

    def has(*words):
        s = screen()
        return all(w in s for w in words) and s
    try:
        s = wait_for(lambda: has('one.txt', 'sent'), 10)
    except TimeoutError:
        pytest.fail('status --watch screen:\n%s' % screen())
    assert 'xmppfs %s online' % ALICE in s, s
    p2 = put(a, BOB, 'two.txt', b'2' * 20)
    wait_state(p2, 'sent', mounts=(a, b))
    try:
        s = wait_for(lambda: has('one.txt', 'two.txt'), 10)
    except TimeoutError:
        pytest.fail('status --watch did not show two.txt:\n%s' % screen())
    # Redrawn in place: each file once on the screen, header once.
    assert s.count('one.txt') == 1 and s.count('two.txt') == 1, s
    assert s.count('xmppfs %s' % ALICE) == 1, s
    row = [l for l in s.splitlines() if 'two.txt' in l][0]
    assert 'sent' in row and '100%' in row, s


# ---------------------------------------------------------------- 7. fstab

_NS_SCRIPT = r'''
set -u
MNT="$1"; BINDIR="$2"; OPTS="$3"; FSTAB="$4"
cleanup() { mountpoint -q "$MNT" && umount -l "$MNT"; }
link() { getfattr --absolute-names --only-values -n user.xmppfs.link "$MNT"; }
trap cleanup EXIT
# mount(8) drops PATH from the environment of its helpers, so mount.fuse3's
# "sh -c xmppfs ..." finds xmppfs only in the shell's default PATH: put our
# binary at /usr/local/bin/xmppfs in this private mount namespace.
mount --bind "$BINDIR" /usr/local/bin || { echo "STEP bind failed"; exit 3; }
echo "STEP mount-t"
mount -t fuse.xmppfs -o "$OPTS" alice@localhost "$MNT" </dev/null
echo "RC $?"
grep " $MNT " /proc/self/mounts | sed 's/^/MOUNTS /'
echo "LINK $(link)"
echo "LS $(ls "$MNT" | tr '\n' ' ')"
umount "$MNT"; echo "UMOUNT $?"
mountpoint -q "$MNT" && echo "STILL mounted"
echo "STEP mount-T"
mount -T "$FSTAB" "$MNT" </dev/null
echo "RC $?"
grep " $MNT " /proc/self/mounts | sed 's/^/MOUNTS /'
echo "LINK $(link)"
echo "LS $(ls "$MNT" | tr '\n' ' ')"
fusermount3 -u "$MNT"; echo "UMOUNT $?"
mountpoint -q "$MNT" && echo "STILL mounted"
echo "STEP done"
'''


def test_fstab_mount(binary, prosody, tmp_path, reaper):
    """mount -t fuse.xmppfs ... and an fstab line (mount -T FILE MNT) go
    through mount.fuse3 to xmppfs; umount / fusermount3 -u unmount it.

    Runs in a private mount namespace (unshare -m) where /usr/local/bin is
    a directory holding only an `xmppfs` symlink to the binary under test:
    mount(8) removes PATH from the helpers' environment, so a PATH entry
    would not be seen."""
    if not (shutil.which('mount.fuse3') and shutil.which('unshare')):
        pytest.skip('mount.fuse3 or unshare missing')
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    os.symlink(binary, str(bindir / 'xmppfs'))
    mnt = new_mnt(tmp_path, 'fstab')
    reaper.append(mnt)
    o1 = account_opts(prosody, tmp_path)
    o2 = account_opts(prosody, tmp_path)
    fstab = tmp_path / 'fstab'
    fstab.write_text('# test fstab\n%s %s fuse.xmppfs noauto,nofail,_netdev,'
                     'nosuid,nodev,%s 0 0\n' % (ALICE, mnt, olist(o2)))
    env = clean_env(tmp_path)
    r = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh',
                        '-c', _NS_SCRIPT, 'ns', mnt, str(bindir), olist(o1),
                        str(fstab)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=90, universal_newlines=True)
    out = r.stdout
    steps = out.split('STEP ')
    assert 'STEP done' in out, out
    for part in (steps[1], steps[2]):    # mount-t, mount-T
        assert 'RC 0' in part, out
        assert 'fuse.xmppfs' in part and 'MOUNTS' in part, out
        assert 'LINK online' in part, out
        assert 'inbox' in part and 'outbox' in part and 'status' in part, out
        assert 'UMOUNT 0' in part and 'STILL' not in part, out
    # Both daemons end after their unmount.
    wait_for(lambda: not procs_with(mnt), 15,
             msg='xmppfs still running: %r' % procs_with(mnt))


def test_mount_fuse3_path(binary, prosody, tmp_path, reaper):
    """mount.fuse3 itself (as mount(8) runs it) honours PATH: a directory
    with an `xmppfs` symlink first in PATH is enough."""
    if not shutil.which('mount.fuse3'):
        pytest.skip('mount.fuse3 missing')
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    os.symlink(binary, str(bindir / 'xmppfs'))
    mnt = new_mnt(tmp_path, 'mf3')
    reaper.append(mnt)
    o = account_opts(prosody, tmp_path)
    env = clean_env(tmp_path, PATH='%s:%s' % (bindir, os.environ['PATH']))
    r = subprocess.run(['mount.fuse3', ALICE, mnt, '-t', 'xmppfs', '-o',
                        'rw,noauto,' + olist(o)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=40, universal_newlines=True)
    assert r.returncode == 0, r.stdout
    assert os.path.ismount(mnt)
    assert os.getxattr(mnt, 'user.xmppfs.link') == b'online'
    with open('/proc/self/mounts') as f:
        ent = [l for l in f if l.split()[1] == mnt]
    assert ent and ent[0].split()[2] == 'fuse.xmppfs', ent
    r = subprocess.run(['umount', mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=20)
    assert r.returncode == 0, r.stdout
    wait_for(lambda: not procs_with(mnt), 10)
    assert not os.path.ismount(mnt)


# ---------------------------------------------------------------- 8. signals

@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT,
                                 signal.SIGHUP])
def test_signal_foreground(xmppfs, tmp_path, sig):
    """SIGTERM (systemd stop) / SIGINT (Ctrl-C) / SIGHUP to xmppfs -f: it
    unmounts cleanly and exits 0."""
    m = xmppfs('alice', env=fixture_env(tmp_path))
    put(m, BOB, 'pending.txt', b'p')
    m.proc.send_signal(sig)
    rc = wait_exit(m.proc, 15)
    assert rc is not None, 'still running 15 s after %s' % sig.name
    assert rc == 0, 'exit %s after %s\n%s' % (rc, sig.name, tail(m.log_path))
    assert not os.path.ismount(m.path)
    assert mount_count(m.path) == 0
    # No "Transport endpoint is not connected" left behind.
    assert os.listdir(m.path) == []
    assert not xfsutil.sanitizer_reports(m.log_text())
    # The pending file survives for the next mount.
    m.start()
    assert os.path.exists(os.path.join(m.outbox(BOB), 'pending.txt'))
