#!/usr/bin/env python3
"""A small Remote Execution worker ("bot") for cachepot's tests.

BuildGrid schedules actions but does not run them: that is a worker's job,
and BuildGrid's own workers (buildbox) are C++ that is not packaged
anywhere. This script is a minimal stand-in, meant only for the test
servers that scripts/services.sh starts. It speaks the Remote Workers API
(google.devtools.remoteworkers.v1test2.Bots) to a BuildGrid execution
server and runs one lease at a time:

  1. CreateBotSession, then UpdateBotSession in a long-poll loop;
  2. for each ACTIVE lease: read the Action (the payload), its Command and
     its input root from CAS, materialise the input root in a fresh temp
     dir, run Command.arguments there with only Command.environment_variables,
     under Action.timeout, and upload stdout, stderr and the declared
     outputs (output_paths, or output_files/output_directories);
  3. hand the ActionResult back as lease.result (an Any), with lease.status
     and state COMPLETED, on the next UpdateBotSession. BuildGrid then
     stores it in its Action Cache and answers Execute with it.

Input roots can be big (a whole Rust toolchain, ~500 MB), so blobs read from
CAS are kept in a local blob cache, <work-dir>/cas/<hash> (and <hash>.x, the
executable copy), shared by the bots that share the work dir, and hard-linked
into each action's directory; only blobs missing from it are fetched.
Directory messages are also kept, in memory.

Commands run as the worker's user, on this machine. With --sandbox each
command runs in a private mount namespace whose root (a tmpfs) shows only
the system directories (/usr, /etc, /dev, ...) and the action's own directory,
at its real path, plus an empty /tmp: a command that reads a file outside its
input root fails as it would on a remote machine. That needs root (or
CAP_SYS_ADMIN); `--check-sandbox` says whether it works here.

Run it with the BuildGrid venv's python (it uses the protos in the wheel):

  python reapi_worker.py --server 127.0.0.1:18981 --bot-id worker-1 [--sandbox]
"""
import argparse
import errno
import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2 as bs
from buildgrid._protos.google.bytestream import bytestream_pb2_grpc as bs_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc, worker_pb2
from buildgrid._protos.google.rpc import code_pb2, error_details_pb2, status_pb2

BATCH_LIMIT = 3 << 20  # bigger blobs, or batches, go through ByteStream
CHUNK = 1 << 20
POLL_TIMEOUT = 30  # seconds per UpdateBotSession long-poll
DEFAULT_TIMEOUT = 600  # seconds, when the Action sets none
ISA = {"x86_64": "x86-64", "aarch64": "aarch64"}.get(platform.machine(), platform.machine())
# Every file in the blob cache has this mtime (2000-01-01): a file whose
# mtime differs was written through a hard link by some command, and is
# fetched again (see BlobCache).
CACHE_MTIME_NS = 946684800 * 10**9


class MissingBlob(Exception):
    pass


class SandboxError(Exception):
    """The sandbox could not be set up: the lease reports INTERNAL."""


def digest_of(data):
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def now():
    t = Timestamp()
    t.GetCurrentTime()
    return t


def child(path, name):
    """path/name, for a name from a Directory message (which must not climb out)."""
    if not name or name in (".", "..") or "/" in name:
        raise ValueError(f"bad file name in input root: {name!r}")
    return os.path.join(path, name)


class Cas:
    """Reads and writes blobs: BatchRead/BatchUpdate when small, else ByteStream."""

    def __init__(self, channel, instance):
        self.instance = instance
        self.prefix = f"{instance}/" if instance else ""
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.bytestream = bs_grpc.ByteStreamStub(channel)

    def fetch(self, digests, sink):
        """Reads the given blobs, calling sink(digest, chunks) for each as it
        arrives (chunks: an iterable of bytes), so that big blobs are never
        held in memory whole."""
        batch, size = [], 0
        for d in {d.hash: d for d in digests}.values():
            if d.size_bytes > BATCH_LIMIT:
                sink(d, self._stream(d))
                continue
            if size + d.size_bytes > BATCH_LIMIT:
                self._batch_read(batch, sink)
                batch, size = [], 0
            batch.append(d)
            size += d.size_bytes
        self._batch_read(batch, sink)

    def _stream(self, d):
        name = f"{self.prefix}blobs/{d.hash}/{d.size_bytes}"
        try:
            for r in self.bytestream.Read(bs.ReadRequest(resource_name=name)):
                yield r.data
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise MissingBlob(f"{d.hash}/{d.size_bytes}") from None
            raise

    def _batch_read(self, digests, sink):
        if not digests:
            return
        resp = self.cas.BatchReadBlobs(re.BatchReadBlobsRequest(instance_name=self.instance, digests=digests))
        for r in resp.responses:
            if r.status.code != code_pb2.OK:
                raise MissingBlob(f"{r.digest.hash}/{r.digest.size_bytes}")
        for r in resp.responses:
            sink(r.digest, [r.data])

    def read_many(self, digests):
        """Returns {hash: bytes} for the given digests."""
        out = {}
        self.fetch(digests, lambda d, chunks: out.__setitem__(d.hash, b"".join(chunks)))
        return out

    def read_message(self, digest, cls):
        return cls.FromString(self.read_many([digest])[digest.hash])

    def upload(self, data):
        d = digest_of(data)
        if d.size_bytes <= BATCH_LIMIT:
            req = re.BatchUpdateBlobsRequest(instance_name=self.instance)
            req.requests.add(digest=d, data=data)
            status = self.cas.BatchUpdateBlobs(req).responses[0].status
            if status.code != code_pb2.OK:
                raise RuntimeError(f"uploading {d.hash}: {status.message}")
        else:
            name = f"{self.prefix}uploads/{os.urandom(16).hex()}/blobs/{d.hash}/{d.size_bytes}"
            chunks = (
                bs.WriteRequest(resource_name=name if off == 0 else "", write_offset=off,
                                data=data[off:off + CHUNK], finish_write=off + CHUNK >= len(data))
                for off in range(0, len(data), CHUNK)
            )
            self.bytestream.Write(chunks)
        return d


class BlobCache:
    """Blobs read from CAS, as files in `dir`: <hash> (mode 644) and <hash>.x
    (mode 755), each written once, atomically (a temp file renamed into
    place), so that the bots sharing the dir never see half a file. Actions
    get hard links to them: two copies, so that the mode of one action's
    file is never another's, and a chmod through a link (which changes the
    cached file) is caught below.

    A command can also write into an input file through its link, changing
    the cached copy; such a copy (its size, mode or mtime is not what was
    written) is fetched again, into a new file, before it is used.

    Nothing is ever evicted: the cache grows without bound, which is fine
    for a test fixture whose work dir goes away with the servers.
    """

    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)

    def path(self, digest, executable):
        return os.path.join(self.dir, digest.hash + (".x" if executable else ""))

    def valid(self, digest, executable):
        try:
            st = os.stat(self.path(digest, executable))
        except FileNotFoundError:
            return False
        return (st.st_size == digest.size_bytes and st.st_mtime_ns == CACHE_MTIME_NS
                and st.st_mode & 0o7777 == (0o755 if executable else 0o644))

    def ensure(self, cas, needed):
        """Makes sure that every (digest, executable) in `needed` is cached;
        fetches (in batches) only the blobs of which neither copy is.
        Returns how many blobs were fetched."""
        to_fetch, local = {}, []
        for digest, executable in {(d.hash, x): (d, x) for d, x in needed}.values():
            if self.valid(digest, executable):
                continue
            if self.valid(digest, not executable):  # the other copy will do
                local.append((digest, executable))
            else:
                to_fetch.setdefault(digest.hash, (digest, set()))[1].add(executable)
        for digest, executable in local:
            tmp = self._temp(digest)
            shutil.copyfile(self.path(digest, not executable), tmp)
            self._commit(tmp, digest, executable)

        def store(digest, chunks):  # writes one fetched blob, checking its hash
            tmp, h, size = self._temp(digest), hashlib.sha256(), 0
            try:
                with open(tmp, "wb") as f:
                    for chunk in chunks:
                        h.update(chunk)
                        size += len(chunk)
                        f.write(chunk)
                if (h.hexdigest(), size) != (digest.hash, digest.size_bytes):
                    raise RuntimeError(f"CAS sent {h.hexdigest()}/{size} for {digest.hash}/{digest.size_bytes}")
                *others, last = sorted(to_fetch[digest.hash][1])
                for executable in others:  # both copies wanted: a second file
                    tmp2 = self._temp(digest)
                    shutil.copyfile(tmp, tmp2)
                    self._commit(tmp2, digest, executable)
                self._commit(tmp, digest, last)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

        cas.fetch([d for d, _ in to_fetch.values()], store)
        return len(to_fetch)

    def _temp(self, digest):
        return os.path.join(self.dir, f".{digest.hash}.{os.getpid()}.{os.urandom(4).hex()}.tmp")

    def _commit(self, tmp, digest, executable):
        os.chmod(tmp, 0o755 if executable else 0o644)
        os.utime(tmp, ns=(CACHE_MTIME_NS, CACHE_MTIME_NS))
        os.replace(tmp, self.path(digest, executable))

    def link(self, digest, executable, dest):
        src = self.path(digest, executable)
        try:
            os.link(src, dest)
        except OSError as e:  # too many links to one inode: a copy instead
            if e.errno != errno.EMLINK:
                raise
            shutil.copy2(src, dest)


# The sandbox's set-up, run (by the python running this worker, in isolated
# mode) as the command's process, which then execs the command: so the pid,
# process group and exit status are the command's own. Its arguments:
#   REPORT_FD ACTION_DIR ROOT CWD N NAME=VALUE*N ARGUMENTS...
# It writes "R" to REPORT_FD (close-on-exec) just before exec, or "E" and the
# reason if the set-up failed, so that the worker can tell a set-up failure
# from the command's own exit code. The mounts live in the new mount
# namespace only: on the worker's side ROOT stays an empty dir, and
# everything goes away when the command's last process exits.
# It is no security boundary: the command still runs as root and sees the
# machine's /proc and /sys; it only keeps honest commands honest.
SANDBOX_PREAMBLE = r"""
import ctypes, glob, os, sys
import warnings  # os.execvpe imports it, and after chroot the stdlib is gone
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
# The system directories shown (whichever exist), and whether read-only.
SYSTEM = [("/usr", 1), ("/bin", 1), ("/sbin", 1), ("/lib", 1), ("/lib32", 1), ("/lib64", 1),
          ("/libx32", 1), ("/etc", 1), ("/dev", 0), ("/proc", 0), ("/sys", 0)]
HIDDEN = ["/usr/include", "/usr/lib/gcc", "/usr/libexec/gcc", "/usr/local/include"] + \
    [d + "/lib/clang" for d in sorted(glob.glob("/usr/lib/llvm-*"))]
report = int(sys.argv[1])
os.set_inheritable(report, False)
try:
    action_dir, root, cwd, n = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    env = dict(v.split("=", 1) for v in sys.argv[6:6 + n])
    args = sys.argv[6 + n:]
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, data=None):
        b = lambda s: s.encode() if s is not None else None
        if libc.mount(b(source), b(target), b(fstype), flags, b(data)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"mount {source} on {target}: {os.strerror(e)}")

    os.unshare(os.CLONE_NEWNS)
    mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing mounted from here on leaks out
    mount("reapi-sandbox", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    for d, read_only in SYSTEM:
        if os.path.islink(d):  # /bin -> usr/bin on merged-/usr systems
            os.symlink(os.readlink(d), root + d)
        elif os.path.isdir(d):
            os.mkdir(root + d)
            mount(d, root + d, None, MS_BIND | MS_REC)
            if read_only:
                mount("none", root + d, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    # The worker's C toolchain is hidden: a C action brings its own, as it
    # must on a worker whose image has another gcc (or none).
    for d in HIDDEN:
        if os.path.isdir(root + d):
            mount("reapi-hidden", root + d, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    os.makedirs(root + action_dir)
    mount(action_dir, root + action_dir, None, MS_BIND | MS_REC)
    os.makedirs(root + "/tmp", exist_ok=True)  # a private, empty /tmp (on the tmpfs)
    os.chmod(root + "/tmp", 0o1777)
    os.chroot(root)
except BaseException as e:
    os.write(report, b"E" + f"sandbox: {e}".encode())
    os._exit(1)
os.write(report, b"R")
try:
    os.chdir(cwd)
    os.execvpe(args[0], args, env)
except Exception as e:  # no such dir, not found, not executable: as unsandboxed
    os.write(2, f"reapi_worker: {args[0]}: {e}\n".encode())
    os._exit(127)
"""


def wait(proc, timeout):
    """Waits for the process; returns (exit_code, stdout, stderr, timed_out).
    On timeout its whole process group is killed."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return proc.returncode, out, err, True


def run_command(command, cwd, timeout):
    """Runs the command; returns (exit_code, stdout, stderr, timed_out)."""
    env = {v.name: v.value for v in command.environment_variables}
    try:
        proc = subprocess.Popen(list(command.arguments), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:  # not found, not executable: report it as a shell would
        return 127, b"", f"reapi_worker: {command.arguments[0]}: {e}\n".encode(), False
    return wait(proc, timeout)


def run_sandboxed(command, cwd, timeout, action_dir, work_dir):
    """run_command in a sandbox showing only the system dirs and action_dir
    (see SANDBOX_PREAMBLE); raises SandboxError if it cannot be set up."""
    root = tempfile.mkdtemp(prefix="sandbox-", dir=work_dir)
    r, w = os.pipe()
    env = [f"{v.name}={v.value}" for v in command.environment_variables]
    # The preamble gets the command's environment in its arguments and runs
    # with none (nor PYTHON* variables: -I), so that the command's
    # LD_PRELOAD and such touch only the command.
    argv = [sys.executable, "-I", "-c", SANDBOX_PREAMBLE, str(w), action_dir, root, cwd, str(len(env)),
            *env, *command.arguments]
    try:
        try:
            proc = subprocess.Popen(argv, env={}, pass_fds=(w,), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise SandboxError(f"starting the sandbox: {e}") from None
        os.close(w)
        w = -1
        result = wait(proc, timeout)
        # Every copy of the pipe's write end is closed by now (exec or exit).
        report = b""
        while chunk := os.read(r, 4096):
            report += chunk
        if not report.startswith(b"R"):
            reason = report[1:].decode(errors="replace") or result[2].decode(errors="replace").strip()
            raise SandboxError(reason or f"sandbox set-up died (status {result[0]})")
        return result
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
        # Only an empty mountpoint on this side (the mounts were in the
        # command's namespace), so rmdir, never rmtree: if a mount were ever
        # visible here, rmdir fails instead of deleting through it.
        try:
            os.rmdir(root)
        except OSError as e:
            log(f"cannot remove {root}: {e}")


class Worker:
    def __init__(self, cas, bot_id, work_dir, sandbox):
        self.cas, self.bot_id, self.work_dir, self.sandbox = cas, bot_id, work_dir, sandbox
        self.blobs = BlobCache(os.path.join(work_dir, "cas"))
        # Directory messages by hash; never evicted (a test fixture, see BlobCache).
        self.directories = {}

    def fetch_tree(self, root):
        """Makes sure that every Directory under `root` is in self.directories,
        reading the missing ones a level at a time."""
        level = [root]
        while level:
            missing = [d for d in level if d.hash not in self.directories]
            for h, data in self.cas.read_many(missing).items():
                self.directories[h] = re.Directory.FromString(data)
            level = [c.digest for d in level for c in self.directories[d.hash].directories]

    def materialise(self, digest, path):
        """Writes the Directory tree `digest` into the existing directory
        `path`, as hard links into the blob cache; returns (files, fetched)."""
        self.fetch_tree(digest)
        dirs, files, symlinks = [], [], []

        def walk(digest, path):  # parents before children in `dirs`
            directory = self.directories[digest.hash]
            files.extend((child(path, f.name), f) for f in directory.files)
            symlinks.extend((child(path, s.name), s.target) for s in directory.symlinks)
            for d in directory.directories:
                dirs.append(child(path, d.name))
                walk(d.digest, dirs[-1])

        walk(digest, path)
        fetched = self.blobs.ensure(self.cas, [(f.digest, f.is_executable) for _, f in files])
        for d in dirs:
            os.mkdir(d)
        for p, f in files:
            self.blobs.link(f.digest, f.is_executable, p)
        for p, target in symlinks:
            os.symlink(target, p)
        return len(files), fetched

    def execute(self, action):
        """Runs an Action; returns (ActionResult, google.rpc.Status, note for the log)."""
        meta = re.ExecutedActionMetadata(worker=self.bot_id, worker_start_timestamp=now())
        root = tempfile.mkdtemp(prefix="action-", dir=self.work_dir)
        try:
            meta.input_fetch_start_timestamp.CopyFrom(now())
            t = time.monotonic()
            command = self.cas.read_message(action.command_digest, re.Command)
            files, fetched = self.materialise(action.input_root_digest, root)
            note = f"{files} input files ({fetched} fetched) in {time.monotonic() - t:.2f}s"
            meta.input_fetch_completed_timestamp.CopyFrom(now())
            cwd = os.path.join(root, command.working_directory)
            outputs = list(command.output_paths) or list(command.output_files) + list(command.output_directories)
            for o in outputs:  # the worker creates the outputs' parent directories
                os.makedirs(os.path.dirname(os.path.join(cwd, o)), exist_ok=True)

            timeout = action.timeout.ToSeconds() if action.HasField("timeout") else DEFAULT_TIMEOUT
            timeout = timeout or DEFAULT_TIMEOUT
            meta.execution_start_timestamp.CopyFrom(now())
            if self.sandbox:
                exit_code, out, err, timed_out = run_sandboxed(command, cwd, timeout, root, self.work_dir)
            else:
                exit_code, out, err, timed_out = run_command(command, cwd, timeout)
            meta.execution_completed_timestamp.CopyFrom(now())

            meta.output_upload_start_timestamp.CopyFrom(now())
            result = re.ActionResult(exit_code=exit_code, stdout_digest=self.cas.upload(out),
                                     stderr_digest=self.cas.upload(err))
            for o in outputs:
                p = os.path.join(cwd, o)
                if os.path.islink(p):
                    result.output_symlinks.add(path=o, target=os.readlink(p))
                elif os.path.isfile(p):
                    with open(p, "rb") as f:
                        result.output_files.add(path=o, digest=self.cas.upload(f.read()),
                                                is_executable=os.access(p, os.X_OK))
                elif os.path.isdir(p):
                    tree_root, children = upload_tree(self.cas, p)
                    tree = re.Tree(root=tree_root, children=children)
                    result.output_directories.add(path=o, tree_digest=self.cas.upload(tree.SerializeToString()))
            meta.output_upload_completed_timestamp.CopyFrom(now())
            meta.worker_completed_timestamp.CopyFrom(now())
            result.execution_metadata.CopyFrom(meta)
            if timed_out:
                status = status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message=f"timed out after {timeout}s")
            else:
                status = status_pb2.Status(code=code_pb2.OK)
            return result, status, note
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def run_lease(self, lease):
        """Runs the lease's Action and marks the lease COMPLETED with its result."""
        note = ""
        try:
            action = re.Action()
            if lease.payload.Is(re.Action.DESCRIPTOR):
                lease.payload.Unpack(action)
            else:  # an Any(Digest) of the Action
                digest = re.Digest()
                lease.payload.Unpack(digest)
                action = self.cas.read_message(digest, re.Action)
            result, status, note = self.execute(action)
            lease.result.Pack(result)
        except MissingBlob as e:  # as the REAPI asks, so that clients upload it again
            status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=f"missing input blob {e}")
            violation = error_details_pb2.PreconditionFailure.Violation(type="MISSING", subject=f"blobs/{e}")
            status.details.add().Pack(error_details_pb2.PreconditionFailure(violations=[violation]))
        except Exception as e:  # BuildGrid retries INTERNAL a few times
            status = status_pb2.Status(code=code_pb2.INTERNAL, message=f"reapi_worker: {e!r}")
        log(f"lease {lease.id}: {status.message or 'exit code %d' % result.exit_code}"
            + (f"; {note}" if note else ""))
        lease.status.CopyFrom(status)
        lease.state = bots_pb2.LeaseState.COMPLETED


def upload_tree(cas, path):
    """Uploads the directory `path` as Directory blobs; returns (root, children)."""
    directory, children = re.Directory(), []
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.islink(p):
            directory.symlinks.add(name=name, target=os.readlink(p))
        elif os.path.isdir(p):
            sub, subchildren = upload_tree(cas, p)
            directory.directories.add(name=name, digest=cas.upload(sub.SerializeToString()))
            children += [sub] + subchildren
        elif os.path.isfile(p):
            with open(p, "rb") as f:
                directory.files.add(name=name, digest=cas.upload(f.read()), is_executable=os.access(p, os.X_OK))
    return directory, children


def check_sandbox(work_dir):
    """Runs a command in a sandbox for a scratch action dir: it must be able
    to write there, and must not see a file next to it. Returns None, or why not."""
    action_dir = tempfile.mkdtemp(prefix="sandbox-check-", dir=work_dir)
    outside = action_dir + ".outside"
    try:
        open(outside, "w").close()
        script = ('touch ok || exit 1; test -f ok || { echo "cannot write in the action dir"; exit 1; }; '
                  'test -e "$0" && { echo "$0 is visible"; exit 1; }; exit 0')
        command = re.Command(arguments=["/bin/sh", "-c", script, outside])
        code, out, err, _ = run_sandboxed(command, action_dir, 30, action_dir, work_dir)
        if code != 0:
            return f"the check command failed (exit code {code}): {(out + err).decode(errors='replace').strip()}"
    except SandboxError as e:
        return str(e)
    finally:
        shutil.rmtree(action_dir, ignore_errors=True)
        os.unlink(outside)
    return None


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="127.0.0.1:18981", help="host:port of BuildGrid (grpc:// is stripped)")
    ap.add_argument("--instance", default="", help='REAPI instance name ("" by default)')
    ap.add_argument("--bot-id", default=f"reapi-worker-{os.getpid()}")
    ap.add_argument("--work-dir", default=tempfile.gettempdir(),
                    help="where actions run, in temp dirs, and the blob cache (cas/) is kept")
    ap.add_argument("--sandbox", action="store_true",
                    help="run each command in a private mount namespace that shows only the system "
                         "dirs and the action's dir (needs root)")
    ap.add_argument("--check-sandbox", action="store_true",
                    help="only check that --sandbox works here: exit status 0 if so, else 1 and why")
    args = ap.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    # The real path: the sandbox shows the action dir at this path, and the
    # system dirs' symlinks (/bin -> usr/bin) must not be in the way.
    work_dir = os.path.realpath(args.work_dir)
    if args.check_sandbox:
        why = check_sandbox(work_dir)
        print("sandbox works" if why is None else f"sandbox does not work: {why}")
        sys.exit(0 if why is None else 1)
    server = args.server.removeprefix("grpc://").removeprefix("http://")
    channel = grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", 64 << 20)])
    worker = Worker(Cas(channel, args.instance), args.bot_id, work_dir, args.sandbox)
    bots = bots_pb2_grpc.BotsStub(channel)
    log(f"work dir {work_dir}; commands {'sandboxed' if args.sandbox else 'not sandboxed'}")
    # The scheduler matches Action.platform properties against these (OSFamily
    # and ISA are match keys in services.sh's config); none at all matches too.
    device = worker_pb2.Device(handle=args.bot_id)
    device.properties.add(key="OSFamily", value="linux")
    device.properties.add(key="ISA", value=ISA)
    template = bots_pb2.BotSession(bot_id=args.bot_id, status=bots_pb2.BotStatus.OK,
                                   worker=worker_pb2.Worker(devices=[device]))
    session = None
    while True:
        try:
            if session is None:
                session = bots.CreateBotSession(
                    bots_pb2.CreateBotSessionRequest(parent=args.instance, bot_session=template),
                    timeout=POLL_TIMEOUT, wait_for_ready=True)
                log(f"bot session {session.name}")
            for lease in session.leases:
                if lease.state == bots_pb2.LeaseState.ACTIVE:
                    worker.run_lease(lease)
            session = bots.UpdateBotSession(
                bots_pb2.UpdateBotSessionRequest(name=session.name, bot_session=session),
                timeout=POLL_TIMEOUT, wait_for_ready=True)
        except grpc.RpcError as e:
            # Long-poll timeouts and restarts keep the session (and any completed
            # lease in it); anything else starts a new session.
            if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                log(f"{e.code().name}: {e.details()}; new bot session")
                session = None
            time.sleep(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
