#!/usr/bin/python3
"""Test helpers for xmppfs integration tests, benchmarks and demos.

Usable outside pytest:

    from xfsutil import start_prosody
    p = start_prosody('/tmp/pros', limits=False, nagle=False)
    ... p.port, p.cafile, p.proxy_port, p.accounts ...
    p.stop()

CLI (runs one private Prosody in the foreground until SIGTERM/SIGINT and
prints one JSON line describing it):

    /usr/bin/python3 tests/integration/xfsutil.py prosody --dir D [--limits] [--nagle]

Everything binds to 127.0.0.1 only. Never touches the system Prosody.
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

PROSODY_BIN = shutil.which('prosody') or '/usr/bin/prosody'
PROSODYCTL_BIN = shutil.which('prosodyctl') or '/usr/bin/prosodyctl'

DOMAIN = 'localhost'
PROXY_JID = 'proxy.localhost'
# eve is deliberately not in the shared roster group.
DEFAULT_ACCOUNTS = ['alice', 'bob', 'carol', 'dave', 'eve']
GROUP_MEMBERS = ['alice', 'bob', 'carol', 'dave']

SANITIZER_PATTERNS = ('==ERROR:', 'runtime error:', 'AddressSanitizer',
                      'LeakSanitizer')


# ---------------------------------------------------------------- helpers

def wait_for(pred, timeout, interval=0.05, msg=''):
    """Poll pred() until it returns a truthy value; return that value.

    Raises TimeoutError(msg) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError('timed out after %.1fs: %s' % (timeout, msg))
        time.sleep(interval)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def md5_file(path, bufsize=1 << 20):
    h = hashlib.md5()
    with open(path, 'rb') as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _block(seed, index, size=1 << 20):
    # Deterministic, cheap, non-repeating-per-block pseudo-random data.
    # sha256 chained in counter mode is fast enough (~300 MB/s) and needs no
    # extra modules.
    out = bytearray()
    key = ('%s:%d:' % (seed, index)).encode()
    i = 0
    while len(out) < size:
        out += hashlib.sha512(key + i.to_bytes(8, 'little')).digest()
        i += 1
    return bytes(out[:size])


def make_file(path, size, seed=0):
    """Write `size` bytes of deterministic content (depends on seed) to path,
    streamed in 1 MiB blocks; returns the md5 hex digest of the content."""
    h = hashlib.md5()
    bs = 1 << 20
    # Generate one 1 MiB base block per seed and vary it cheaply per block so
    # that multi-GiB files are fast to produce but blocks still differ.
    base = _block(seed, 0, bs)
    with open(path, 'wb') as f:
        done = 0
        idx = 0
        while done < size:
            n = min(bs, size - done)
            if idx == 0:
                blk = base[:n]
            else:
                tag = hashlib.sha256(('%s/%d' % (seed, idx)).encode()).digest()
                blk = (tag + base[len(tag):])[:n]
            f.write(blk)
            h.update(blk)
            done += n
            idx += 1
    return h.hexdigest()


def tail(path, lines=40):
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        return '<cannot read %s: %s>' % (path, e)
    return '\n'.join(data.decode('utf-8', 'replace').splitlines()[-lines:])


def sanitizer_reports(text):
    """Lines of `text` that look like sanitizer reports."""
    return [l for l in text.splitlines()
            if any(p in l for p in SANITIZER_PATTERNS)]


def port_open(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stop_pid(proc, term_timeout=5.0):
    """SIGTERM a Popen we started, then SIGKILL after term_timeout s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=term_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# ---------------------------------------------------------------- TLS

def make_ca_and_cert(d, names=('localhost',)):
    """Create a test CA and a server certificate for `names` in directory d.

    Returns (cafile, certfile, keyfile)."""
    os.makedirs(d, exist_ok=True)
    ca_key = os.path.join(d, 'ca.key')
    ca_crt = os.path.join(d, 'ca.pem')
    key = os.path.join(d, 'localhost.key')
    csr = os.path.join(d, 'localhost.csr')
    crt = os.path.join(d, 'localhost.crt')
    ext = os.path.join(d, 'localhost.ext')

    def ossl(*args):
        subprocess.run(['openssl'] + list(args), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', ca_key,
         '-out', ca_crt, '-days', '3650', '-subj', '/CN=xmppfs test CA',
         '-addext', 'basicConstraints=critical,CA:TRUE',
         '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr,
         '-subj', '/CN=%s' % names[0])
    with open(ext, 'w') as f:
        f.write('basicConstraints=CA:FALSE\n'
                'keyUsage=digitalSignature,keyEncipherment\n'
                'extendedKeyUsage=serverAuth\n'
                'subjectAltName=%s\n' % ','.join('DNS:' + n for n in names))
    ossl('x509', '-req', '-in', csr, '-CA', ca_crt, '-CAkey', ca_key,
         '-CAcreateserial', '-out', crt, '-days', '3650', '-sha256',
         '-extfile', ext)
    os.chmod(key, 0o600)
    return ca_crt, crt, key


# ---------------------------------------------------------------- Prosody

def _lua_str(s):
    return '"' + str(s).replace('\\', '\\\\').replace('"', '\\"') + '"'


class Prosody:
    """A private Prosody instance in `dir`. Use start_prosody()."""

    domain = DOMAIN
    host = '127.0.0.1'
    proxy_jid = PROXY_JID

    def __init__(self, dir, limits=False, nagle=False, log_level='debug',
                 port=None, proxy_port=None, accounts=None):
        self.dir = os.path.abspath(dir)
        self.limits = limits
        self.nagle = nagle
        self.log_level = log_level
        self.port = port or free_port()
        self.proxy_port = proxy_port or free_port()
        while self.proxy_port == self.port:
            self.proxy_port = free_port()
        self.data_path = os.path.join(self.dir, 'data')
        self.config_path = os.path.join(self.dir, 'prosody.cfg.lua')
        self.groups_path = os.path.join(self.dir, 'groups.txt')
        self.log_path = os.path.join(self.dir, 'prosody.log')
        self.pidfile = os.path.join(self.dir, 'prosody.pid')
        self.proc = None
        self.accounts = {}
        names = DEFAULT_ACCOUNTS if accounts is None else accounts
        self._initial = dict((self.jid(n), n + '-pw') for n in names)
        self.cafile = None
        self.certfile = None
        self.keyfile = None

    # -- naming
    def jid(self, name):
        return name if '@' in name else '%s@%s' % (name, self.domain)

    def password(self, name):
        return self.accounts[self.jid(name)]

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    @property
    def server(self):
        return '%s:%d' % (self.host, self.port)

    def info(self):
        return {'domain': self.domain, 'host': self.host, 'port': self.port,
                'cafile': self.cafile, 'proxy_jid': self.proxy_jid,
                'proxy_port': self.proxy_port, 'accounts': self.accounts,
                'pid': self.pid, 'log_path': self.log_path,
                'config': self.config_path, 'dir': self.dir}

    # -- setup
    def _setup(self):
        os.makedirs(self.data_path, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.cafile, self.certfile, self.keyfile = make_ca_and_cert(
            os.path.join(self.dir, 'certs'))
        with open(self.groups_path, 'w') as f:
            f.write('[Testers]\n')
            for n in GROUP_MEMBERS:
                f.write('%s=%s\n' % (self.jid(n), n.capitalize()))
        self._write_config()

    def _write_config(self):
        mods = ['roster', 'saslauth', 'tls', 'disco', 'ping', 'presence',
                'groups', 'smacks']
        if self.limits:
            mods.append('limits')
        lines = [
            '-- generated by tests/integration/xfsutil.py; private test server',
            'run_as_root = true',
            'daemonize = false',
            'pidfile = %s' % _lua_str(self.pidfile),
            'data_path = %s' % _lua_str(self.data_path),
            'plugin_paths = {}',
            'interfaces = { "127.0.0.1" }',
            'local_interfaces = { "127.0.0.1" }',
            'use_ipv6 = false',
            'c2s_ports = { %d }' % self.port,
            'c2s_interfaces = { "127.0.0.1" }',
            'c2s_direct_tls_ports = {}',
            'legacy_ssl_ports = {}',
            's2s_ports = {}',
            'http_ports = {}',
            'https_ports = {}',
            'proxy65_ports = { %d }' % self.proxy_port,
            'proxy65_interfaces = { "127.0.0.1" }',
            'proxy65_address = "127.0.0.1"',
            'modules_enabled = { %s }' % ', '.join(_lua_str(m) for m in mods),
            'modules_disabled = { "s2s", "posix" }',
            'authentication = "internal_plain"',
            'storage = "internal"',
            'c2s_require_encryption = true',
            's2s_require_encryption = false',
            'allow_registration = false',
            'ssl = { key = %s; certificate = %s; }' % (
                _lua_str(self.keyfile), _lua_str(self.certfile)),
            'groups_file = %s' % _lua_str(self.groups_path),
            'log = { { levels = { min = %s }, to = "file", filename = %s } }'
            % (_lua_str(self.log_level), _lua_str(self.log_path)),
        ]
        if not self.nagle:
            lines.append('network_settings = { nagle = false }')
        if self.limits:
            # As in Debian's stock /etc/prosody/prosody.cfg.lua.
            lines.append('limits = { c2s = { rate = "10kb/s"; }; '
                         's2sin = { rate = "30kb/s"; }; }')
        lines += [
            '',
            'VirtualHost %s' % _lua_str(self.domain),
            '',
            'Component %s "proxy65"' % _lua_str(self.proxy_jid),
            '    proxy65_address = "127.0.0.1"',
            '',
        ]
        with open(self.config_path, 'w') as f:
            f.write('\n'.join(lines))

    def make_account(self, name, password):
        """Register (or re-password) an account; works whether or not the
        server is running."""
        jid = self.jid(name)
        user, host = jid.split('@', 1)
        r = subprocess.run([PROSODYCTL_BIN, '--config', self.config_path,
                            'register', user, host, password],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        if r.returncode != 0:
            raise RuntimeError('prosodyctl register %s failed: %s'
                               % (jid, r.stdout.decode(errors='replace')))
        self.accounts[jid] = password
        return jid

    # -- lifecycle
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=15):
        """Start (or restart) with the same config and ports."""
        if self.running():
            return self
        self._write_config()
        with open(self.log_path, 'ab') as lf:
            lf.write(b'\n=== xfsutil: starting prosody ===\n')
            self.proc = subprocess.Popen(
                [PROSODY_BIN, '--config', self.config_path],
                stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('prosody exited with %s:\n%s'
                                   % (self.proc.returncode,
                                      tail(self.log_path)))
            if (port_open(self.host, self.port)
                    and port_open(self.host, self.proxy_port)):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError('prosody did not open ports %d/%d in %ss:'
                                   '\n%s' % (self.port, self.proxy_port,
                                             timeout, tail(self.log_path)))
            time.sleep(0.05)

    def stop(self):
        stop_pid(self.proc, 5.0)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def start_prosody(tmpdir, limits=False, nagle=False, log_level='debug',
                  accounts=None):
    """Create config, CA, certificate, groups file and accounts in tmpdir,
    start Prosody, and wait until c2s and proxy65 accept connections.

    limits=True loads mod_limits with Debian's stock c2s rate (10kb/s);
    nagle=True leaves Nagle's algorithm on (Prosody's default).
    """
    p = Prosody(tmpdir, limits=limits, nagle=nagle, log_level=log_level,
                accounts=accounts)
    p._setup()
    for jid, pw in p._initial.items():
        p.make_account(jid, pw)
    p.start()
    return p


# ---------------------------------------------------------------- xmppfs

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def find_xmppfs_bin():
    env = os.environ.get('XMPPFS_BIN')
    if env:
        return env if os.path.exists(env) else None
    for b in ('build', 'build-asan'):
        p = os.path.join(REPO, b, 'xmppfs')
        if os.path.exists(p) and os.access(p, os.X_OK):
            return p
    return None


def fuse_missing_reason():
    """None when FUSE mounts can work here, else why not."""
    if not os.path.exists('/dev/fuse'):
        return '/dev/fuse is missing'
    if not shutil.which('fusermount3'):
        return 'fusermount3 is missing'
    return None


def fusermount_u(path, lazy=False):
    args = ['fusermount3', '-u'] + (['-z'] if lazy else []) + [path]
    return subprocess.run(args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=15)


class Mount:
    """One running xmppfs daemon (foreground, -f) and its mountpoint."""

    def __init__(self, binary, jid, path, data_dir, log_path, options,
                 password_file, env=None, extra_args=(), offline=False):
        self.binary = binary
        self.jid = jid
        self.path = path
        self.data_dir = data_dir
        self.log_path = log_path
        self.options = options          # list of "k=v" / "k" strings
        self.password_file = password_file
        self.env = env
        self.extra_args = list(extra_args)
        self.offline = offline
        self.proc = None

    # -- paths
    def _jid(self, j):
        if j is None:
            return None
        return j if '@' in j else '%s@%s' % (j, DOMAIN)

    def outbox(self, jid=None):
        p = os.path.join(self.path, 'outbox')
        return p if jid is None else os.path.join(p, self._jid(jid))

    def inbox(self, jid=None):
        p = os.path.join(self.path, 'inbox')
        return p if jid is None else os.path.join(p, self._jid(jid))

    # -- state
    def xattr(self, path, name):
        return os.getxattr(path, name)

    def state(self, path):
        return os.getxattr(path, 'user.xmppfs.state').decode()

    def log_text(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def argv(self):
        return ([self.binary, '-f'] + self.extra_args
                + ['-o', ','.join(self.options), self.jid, self.path])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def mounted(self):
        return os.path.ismount(self.path)

    # -- lifecycle
    def start(self, wait=True, online=None, mount_timeout=10,
              online_timeout=15):
        """Start the daemon; unless wait=False, wait until mounted and
        (online=None means: unless offline) until user.xmppfs.link is
        'online'."""
        if online is None:
            online = not self.offline
        os.makedirs(self.path, exist_ok=True)
        env = dict(os.environ)
        env.setdefault('ASAN_OPTIONS', 'detect_leaks=1:abort_on_error=0')
        env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1')
        env.pop('XMPPFS_PASSWORD', None)
        if self.env:
            env.update(self.env)
        with open(self.log_path, 'ab') as lf:
            lf.write(('\n=== xfsutil: %s ===\n' % ' '.join(self.argv()))
                     .encode())
            lf.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=lf, stderr=subprocess.STDOUT,
                                         env=env)
        if not wait:
            return self
        deadline = time.monotonic() + mount_timeout
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None:
                raise MountError('xmppfs exited with %s before mounting; log '
                                 'tail:\n%s' % (self.proc.returncode,
                                                tail(self.log_path)))
            if time.monotonic() > deadline:
                self.kill()
                raise MountError('%s not mounted after %ss; log tail:\n%s'
                                 % (self.path, mount_timeout,
                                    tail(self.log_path)))
            time.sleep(0.02)
        if online:
            self.wait_online(online_timeout)
        return self

    def link(self):
        """Value of user.xmppfs.link on the root, or None if unsupported."""
        try:
            return os.getxattr(self.path, 'user.xmppfs.link')
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.ENODATA, errno.ENOSYS):
                return None
            raise

    def wait_online(self, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            v = self.link()
            if v is None or v.rstrip(b'\0\n') == b'online':
                return
            if self.proc.poll() is not None:
                raise MountError('xmppfs exited with %s; log tail:\n%s'
                                 % (self.proc.returncode, tail(self.log_path)))
            if time.monotonic() > deadline:
                raise MountError('link not online after %ss (last %r); log '
                                 'tail:\n%s' % (timeout, v,
                                                tail(self.log_path)))
            time.sleep(0.05)

    def unmount(self, timeout=10):
        """fusermount3 -u; wait for the daemon to exit (up to timeout s),
        then kill it. Returns the daemon's exit code."""
        if self.mounted():
            r = None
            for _ in range(20):
                r = fusermount_u(self.path)
                if r.returncode == 0 or not self.mounted():
                    break
                time.sleep(0.1)       # EBUSY: someone still has it open
            if self.mounted():
                fusermount_u(self.path, lazy=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            return self.proc.returncode
        return None

    def kill(self):
        """SIGKILL the daemon, then lazily unmount."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.mounted():
            fusermount_u(self.path, lazy=True)
        else:
            # A dead FUSE daemon leaves 'Transport endpoint is not connected'
            # which ismount() may not report; detach anyway, ignore errors.
            fusermount_u(self.path, lazy=True)

    def restart(self, **kw):
        if self.running() or self.mounted():
            self.unmount()
        return self.start(**kw)


class MountError(Exception):
    pass


# ---------------------------------------------------------------- slixpeer

PEER = os.path.join(os.path.dirname(HERE), 'peer', 'slixpeer.py')
PEER_PYTHON = '/usr/bin/python3'


def peer_argv(prosody, name, resource='slixpeer'):
    """Common slixpeer arguments to log in as `name` on `prosody`."""
    jid = prosody.jid(name)
    return [PEER_PYTHON, PEER, '--jid', '%s/%s' % (jid, resource),
            '--password', prosody.password(jid), '--server', prosody.server,
            '--cafile', prosody.cafile]


class PeerReceiver:
    """A `slixpeer.py receive` process. results() -> list of JSON dicts."""

    def __init__(self, prosody, name, dir, count=1, timeout=30,
                 resource='slixpeer', extra=(), log_path=None):
        os.makedirs(dir, exist_ok=True)
        self.dir = dir
        self.ready_file = os.path.join(dir, '..', '.ready-%s-%s-%d' % (
            name, resource, os.getpid()))
        self.ready_file = os.path.abspath(self.ready_file)
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        self.timeout = timeout
        self.log_path = log_path or os.path.abspath(
            os.path.join(dir, '..', 'slixpeer-%s-%s.log' % (name, resource)))
        argv = peer_argv(prosody, name, resource) + [
            'receive', '--dir', dir, '--count', str(count),
            '--timeout', str(timeout), '--ready-file', self.ready_file
        ] + list(extra)
        self._log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        self.jid = None
        self._results = None

    def wait_ready(self, timeout=15):
        """Block until logged in; return our full JID."""
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError('slixpeer receive exited early (%s): %s'
                                   % (self.proc.returncode,
                                      tail(self.log_path)))
            try:
                with open(self.ready_file) as f:
                    return f.read().strip() or None
            except OSError:
                return None
        self.jid = wait_for(ready, timeout, msg='slixpeer receiver ready')
        return self.jid

    def results(self, timeout=None):
        """Wait for exit (timeout defaults to the receiver's + 10 s) and
        return its JSON lines as dicts."""
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

    @property
    def returncode(self):
        return self.proc.returncode

    def stop(self):
        stop_pid(self.proc, 3)
        if not self._log.closed:
            self._log.close()


def peer_send(prosody, name, to, file, method=None, timeout=30,
              resource='sender', extra=(), log_path=None):
    """Run `slixpeer.py send` to completion. Returns (returncode, result
    dict). `to` may be a short name, bare or full JID."""
    if '@' not in to:
        to = prosody.jid(to)
    argv = peer_argv(prosody, name, resource) + [
        'send', '--to', to, '--file', file, '--timeout', str(timeout)]
    if method:
        argv += ['--method', method]
    argv += list(extra)
    lf = open(log_path, 'ab') if log_path else subprocess.PIPE
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=lf,
                           stdin=subprocess.DEVNULL, timeout=timeout + 15)
    finally:
        if log_path:
            lf.close()
    lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
    if lines:
        return r.returncode, json.loads(lines[-1])
    err = tail(log_path) if log_path else r.stderr.decode(errors='replace')
    return r.returncode, {'ok': False, 'error': 'no output: ' + err[-2000:]}


# ---------------------------------------------------------------- mount state

STATUS_COLS = ('dir', 'state', 'progress', 'size', 'method', 'jid', 'name',
               'error')


def _status_unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == '\\' and i + 1 < len(s):
            out.append({'t': '\t', 'n': '\n', '\\': '\\'}.get(
                s[i + 1], '\\' + s[i + 1]))
            i += 2
            continue
        out.append(s[i])
        i += 1
    return ''.join(out)


def read_status(mount_path):
    """(header line, rows) of <mount>/status. Rows are dicts keyed by
    STATUS_COLS; progress and size are ints; jid, name and error are
    unescaped (\\t \\n \\\\). Raises AssertionError on a malformed file."""
    with open(os.path.join(mount_path, 'status'), encoding='utf-8',
              errors='surrogateescape') as f:
        text = f.read()
    lines = text.split('\n')
    assert lines and lines[0].startswith('# xmppfs '), repr(text[:200])
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
            r[k] = _status_unescape(r[k])
        rows.append(r)
    return lines[0], rows


def xattr_str(path, name):
    """user.xmppfs.<name> of path as text, '' when absent."""
    try:
        return os.getxattr(path, 'user.xmppfs.' + name).decode(
            'utf-8', 'surrogateescape')
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return ''
        raise


def inbox_listing(m):
    """{sender: sorted names} of a Mount's inbox/."""
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


DATA_DIR_ENTRIES = ('inbox', 'partial', 'spool')


def data_dir_strays(data_dir):
    """Entries of an xmppfs data directory that are not its own: anything
    at the top besides inbox/ partial/ spool/ state.db*, anything below
    those three that is not a plain file named by a row id (digits), and
    any subdirectory. Names from the network must never reach the disk."""
    bad = []
    for e in sorted(os.listdir(data_dir)):
        p = os.path.join(data_dir, e)
        if e in DATA_DIR_ENTRIES and os.path.isdir(p) \
                and not os.path.islink(p):
            for f in sorted(os.listdir(p)):
                fp = os.path.join(p, f)
                if not f.isdigit() or os.path.islink(fp) \
                        or not os.path.isfile(fp):
                    bad.append(os.path.join(e, f))
        elif not e.startswith('state.db'):
            bad.append(e)
    return bad


# ---------------------------------------------------------------- CLI

def _cli(argv):
    import argparse
    ap = argparse.ArgumentParser(prog='xfsutil.py')
    sub = ap.add_subparsers(dest='cmd', required=True)
    sp = sub.add_parser('prosody', help='run a private Prosody in the '
                        'foreground; print JSON; stop on SIGTERM/SIGINT')
    sp.add_argument('--dir', required=True)
    sp.add_argument('--limits', action='store_true',
                    help='load mod_limits, c2s 10kb/s (Debian stock)')
    sp.add_argument('--nagle', action='store_true',
                    help="leave Nagle on (Prosody's default)")
    sp.add_argument('--log-level', default='info')
    a = ap.parse_args(argv)

    if a.cmd == 'prosody':
        stop = []

        def on_sig(signum, frame):
            stop.append(signum)
        signal.signal(signal.SIGTERM, on_sig)
        signal.signal(signal.SIGINT, on_sig)
        os.makedirs(a.dir, exist_ok=True)
        p = start_prosody(a.dir, limits=a.limits, nagle=a.nagle,
                          log_level=a.log_level)
        try:
            print(json.dumps(p.info()), flush=True)
            while not stop and p.running():
                time.sleep(0.2)
        finally:
            p.stop()
        return 0 if stop else 1


if __name__ == '__main__':
    sys.exit(_cli(sys.argv[1:]))
