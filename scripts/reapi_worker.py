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

Nothing is sandboxed: commands run as the worker's user, on this machine.
Run it with the BuildGrid venv's python (it uses the protos in the wheel):

  python reapi_worker.py --server 127.0.0.1:18981 --bot-id worker-1
"""
import argparse
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


class MissingBlob(Exception):
    pass


def digest_of(data):
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def now():
    t = Timestamp()
    t.GetCurrentTime()
    return t


class Cas:
    """Reads and writes blobs: BatchRead/BatchUpdate when small, else ByteStream."""

    def __init__(self, channel, instance):
        self.instance = instance
        self.prefix = f"{instance}/" if instance else ""
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.bytestream = bs_grpc.ByteStreamStub(channel)

    def read_many(self, digests):
        """Returns {hash: bytes} for the given digests."""
        out, batch, size = {}, [], 0
        for d in {d.hash: d for d in digests}.values():
            if d.size_bytes > BATCH_LIMIT:
                name = f"{self.prefix}blobs/{d.hash}/{d.size_bytes}"
                try:
                    out[d.hash] = b"".join(r.data for r in self.bytestream.Read(bs.ReadRequest(resource_name=name)))
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.NOT_FOUND:
                        raise MissingBlob(f"{d.hash}/{d.size_bytes}")
                    raise
                continue
            if size + d.size_bytes > BATCH_LIMIT:
                out.update(self._batch_read(batch))
                batch, size = [], 0
            batch.append(d)
            size += d.size_bytes
        out.update(self._batch_read(batch))
        return out

    def _batch_read(self, digests):
        if not digests:
            return {}
        resp = self.cas.BatchReadBlobs(re.BatchReadBlobsRequest(instance_name=self.instance, digests=digests))
        for r in resp.responses:
            if r.status.code != code_pb2.OK:
                raise MissingBlob(f"{r.digest.hash}/{r.digest.size_bytes}")
        return {r.digest.hash: r.data for r in resp.responses}

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


def materialise(cas, digest, path):
    """Writes the Directory tree `digest` into the existing directory `path`."""
    directory = cas.read_message(digest, re.Directory)
    blobs = cas.read_many([f.digest for f in directory.files])
    for f in directory.files:
        p = os.path.join(path, f.name)
        with open(p, "wb") as out:
            out.write(blobs[f.digest.hash])
        os.chmod(p, 0o755 if f.is_executable else 0o644)
    for s in directory.symlinks:
        os.symlink(s.target, os.path.join(path, s.name))
    for d in directory.directories:
        os.mkdir(os.path.join(path, d.name))
        materialise(cas, d.digest, os.path.join(path, d.name))


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


def run_command(command, cwd, timeout):
    """Runs the command; returns (exit_code, stdout, stderr, timed_out)."""
    env = {v.name: v.value for v in command.environment_variables}
    try:
        proc = subprocess.Popen(list(command.arguments), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:  # not found, not executable: report it as a shell would
        return 127, b"", f"reapi_worker: {command.arguments[0]}: {e}\n".encode(), False
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return proc.returncode, out, err, True


def execute(cas, action, bot_id, scratch):
    """Runs an Action; returns (ActionResult, google.rpc.Status)."""
    meta = re.ExecutedActionMetadata(worker=bot_id, worker_start_timestamp=now())
    root = tempfile.mkdtemp(prefix="action-", dir=scratch)
    try:
        meta.input_fetch_start_timestamp.CopyFrom(now())
        command = cas.read_message(action.command_digest, re.Command)
        materialise(cas, action.input_root_digest, root)
        meta.input_fetch_completed_timestamp.CopyFrom(now())
        cwd = os.path.join(root, command.working_directory)
        outputs = list(command.output_paths) or list(command.output_files) + list(command.output_directories)
        for o in outputs:  # the worker creates the outputs' parent directories
            os.makedirs(os.path.dirname(os.path.join(cwd, o)), exist_ok=True)

        timeout = action.timeout.ToSeconds() if action.HasField("timeout") else DEFAULT_TIMEOUT
        meta.execution_start_timestamp.CopyFrom(now())
        exit_code, out, err, timed_out = run_command(command, cwd, timeout or DEFAULT_TIMEOUT)
        meta.execution_completed_timestamp.CopyFrom(now())

        meta.output_upload_start_timestamp.CopyFrom(now())
        result = re.ActionResult(exit_code=exit_code, stdout_digest=cas.upload(out), stderr_digest=cas.upload(err))
        for o in outputs:
            p = os.path.join(cwd, o)
            if os.path.islink(p):
                result.output_symlinks.add(path=o, target=os.readlink(p))
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    result.output_files.add(path=o, digest=cas.upload(f.read()), is_executable=os.access(p, os.X_OK))
            elif os.path.isdir(p):
                tree_root, children = upload_tree(cas, p)
                tree = re.Tree(root=tree_root, children=children)
                result.output_directories.add(path=o, tree_digest=cas.upload(tree.SerializeToString()))
        meta.output_upload_completed_timestamp.CopyFrom(now())
        meta.worker_completed_timestamp.CopyFrom(now())
        result.execution_metadata.CopyFrom(meta)
        if timed_out:
            return result, status_pb2.Status(code=code_pb2.DEADLINE_EXCEEDED, message=f"timed out after {timeout}s")
        return result, status_pb2.Status(code=code_pb2.OK)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_lease(cas, lease, bot_id, scratch):
    """Runs the lease's Action and marks the lease COMPLETED with its result."""
    try:
        action = re.Action()
        if lease.payload.Is(re.Action.DESCRIPTOR):
            lease.payload.Unpack(action)
        else:  # an Any(Digest) of the Action
            digest = re.Digest()
            lease.payload.Unpack(digest)
            action = cas.read_message(digest, re.Action)
        result, status = execute(cas, action, bot_id, scratch)
        lease.result.Pack(result)
    except MissingBlob as e:  # as the REAPI asks, so that clients upload it again
        status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=f"missing input blob {e}")
        violation = error_details_pb2.PreconditionFailure.Violation(type="MISSING", subject=f"blobs/{e}")
        status.details.add().Pack(error_details_pb2.PreconditionFailure(violations=[violation]))
    except Exception as e:  # BuildGrid retries INTERNAL a few times
        status = status_pb2.Status(code=code_pb2.INTERNAL, message=f"reapi_worker: {e!r}")
    log(f"lease {lease.id}: {status.message or 'exit code %d' % result.exit_code}")
    lease.status.CopyFrom(status)
    lease.state = bots_pb2.LeaseState.COMPLETED


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="127.0.0.1:18981", help="host:port of BuildGrid (grpc:// is stripped)")
    ap.add_argument("--instance", default="", help='REAPI instance name ("" by default)')
    ap.add_argument("--bot-id", default=f"reapi-worker-{os.getpid()}")
    ap.add_argument("--work-dir", default=tempfile.gettempdir(), help="where actions run, in temp dirs")
    args = ap.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    server = args.server.removeprefix("grpc://").removeprefix("http://")
    channel = grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", 64 << 20)])
    cas, bots = Cas(channel, args.instance), bots_pb2_grpc.BotsStub(channel)
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
                    run_lease(cas, lease, args.bot_id, args.work_dir)
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
