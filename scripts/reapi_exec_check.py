#!/usr/bin/env python3
"""End-to-end check of the remote execution test server (services.sh).

Uploads a few Actions to the BuildGrid execution server, runs them through
Execution.Execute (so the scheduler hands them to reapi_worker.py) and
checks exit codes, stdout and output files. Exits non-zero, saying what
failed, if anything is wrong. Run it with the BuildGrid venv's python:

  ~/.cache/cachepot-test-tools/buildgrid-venv/bin/python scripts/reapi_exec_check.py \\
      [--server grpc://127.0.0.1:18981]
"""
import argparse
import hashlib
import sys
import time
import uuid

import grpc

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.rpc import code_pb2

FAILURES = []


def digest_of(data):
    return re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def check(name, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {name}{'' if cond else ': ' + detail}")
    if not cond:
        FAILURES.append(name)


class Client:
    def __init__(self, server, instance):
        channel = grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", 64 << 20)])
        try:
            grpc.channel_ready_future(channel).result(timeout=10)
        except grpc.FutureTimeoutError:
            raise SystemExit(f"FAIL: no server at {server} (is `scripts/services.sh start` done?)")
        self.instance = instance
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.ac = re_grpc.ActionCacheStub(channel)
        self.execution = re_grpc.ExecutionStub(channel)

    def upload(self, *blobs):
        req = re.BatchUpdateBlobsRequest(instance_name=self.instance)
        for data in blobs:
            req.requests.add(digest=digest_of(data), data=data)
        for r in self.cas.BatchUpdateBlobs(req).responses:
            if r.status.code != code_pb2.OK:
                raise SystemExit(f"uploading {r.digest.hash} failed: {r.status.message}")

    def read(self, digest):
        resp = self.cas.BatchReadBlobs(re.BatchReadBlobsRequest(instance_name=self.instance, digests=[digest]))
        return resp.responses[0].data if resp.responses[0].status.code == code_pb2.OK else None

    def action(self, args, outputs, input_root=re.Directory(), env=()):
        """Uploads a Command and an Action for it; returns the Action's digest."""
        command = re.Command(arguments=args, output_paths=outputs)
        # A fresh variable each run, so that the Action Cache never answers.
        for name, value in [*env, ("CHECK_NONCE", uuid.uuid4().hex)]:
            command.environment_variables.add(name=name, value=value)
        command_blob = command.SerializeToString()
        root_blob = input_root.SerializeToString()
        action = re.Action(command_digest=digest_of(command_blob), input_root_digest=digest_of(root_blob))
        action.timeout.FromSeconds(60)
        action_blob = action.SerializeToString()
        self.upload(command_blob, root_blob, action_blob)
        return digest_of(action_blob)

    def execute(self, action_digest, skip_cache_lookup=True):
        """Runs Execute to completion; returns the ExecuteResponse."""
        req = re.ExecuteRequest(instance_name=self.instance, action_digest=action_digest,
                                skip_cache_lookup=skip_cache_lookup)
        last = None
        for op in self.execution.Execute(req, timeout=120):
            last = op
        if last is None or not last.done:
            raise SystemExit(f"Execute ended without a finished operation: {last}")
        if last.HasField("error"):
            raise SystemExit(f"Execute failed: {last.error}")
        response = re.ExecuteResponse()
        last.response.Unpack(response)
        return response

    def output(self, result, path):
        for f in result.output_files:
            if f.path == path:
                return self.read(f.digest), f.is_executable
        return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="grpc://127.0.0.1:18981")
    ap.add_argument("--instance", default="")
    args = ap.parse_args()
    client = Client(args.server.removeprefix("grpc://").removeprefix("http://"), args.instance)

    # 1. Empty input root: stdout and a declared output file.
    t = time.monotonic()
    digest = client.action(["/bin/sh", "-c", "echo hello; echo out > out.txt"], ["out.txt"])
    resp = client.execute(digest)
    r = resp.result
    print(f"     (executed in {time.monotonic() - t:.2f}s on {r.execution_metadata.worker or '?'})")
    check("empty input root: status OK", resp.status.code == code_pb2.OK, str(resp.status))
    check("empty input root: exit code 0", r.exit_code == 0, str(r.exit_code))
    check("empty input root: stdout", client.read(r.stdout_digest) == b"hello\n", repr(client.read(r.stdout_digest)))
    check("empty input root: out.txt", client.output(r, "out.txt")[0] == b"out\n", str(client.output(r, "out.txt")))
    cached = client.ac.GetActionResult(re.GetActionResultRequest(instance_name=args.instance, action_digest=digest))
    check("empty input root: result in the Action Cache", cached.exit_code == 0 and len(cached.output_files) == 1)

    # 2. An input root with a file, and an executable in a subdirectory; the
    #    output goes to a directory the worker must create.
    data = b"input data\n"
    tool = b"#!/bin/sh\necho \"tool says $GREETING\"\n"
    bin_dir = re.Directory()
    bin_dir.files.add(name="tool", digest=digest_of(tool), is_executable=True)
    bin_blob = bin_dir.SerializeToString()
    root = re.Directory()
    root.files.add(name="in.txt", digest=digest_of(data))
    root.directories.add(name="bin", digest=digest_of(bin_blob))
    client.upload(data, tool, bin_blob)
    t = time.monotonic()
    digest = client.action(["/bin/sh", "-c", "cat in.txt; ./bin/tool > out/res.txt; cp bin/tool out/tool"],
                           ["out/res.txt", "out/tool"], root, env=[("GREETING", "hi")])
    resp = client.execute(digest)
    r = resp.result
    print(f"     (executed in {time.monotonic() - t:.2f}s on {r.execution_metadata.worker or '?'})")
    check("input files: exit code 0", r.exit_code == 0, f"{r.exit_code}, stderr {client.read(r.stderr_digest)!r}")
    check("input files: stdout is in.txt", client.read(r.stdout_digest) == data, repr(client.read(r.stdout_digest)))
    check("input files: out/res.txt", client.output(r, "out/res.txt") == (b"tool says hi\n", False),
          str(client.output(r, "out/res.txt")))
    check("input files: out/tool is executable", client.output(r, "out/tool") == (tool, True),
          str(client.output(r, "out/tool")))

    # 3. A failing command: its exit code and stderr come back.
    digest = client.action(["/bin/sh", "-c", "echo oops >&2; exit 3"], [])
    r = client.execute(digest).result
    check("failing command: exit code 3", r.exit_code == 3, str(r.exit_code))
    check("failing command: stderr", client.read(r.stderr_digest) == b"oops\n", repr(client.read(r.stderr_digest)))

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed: {', '.join(FAILURES)}", file=sys.stderr)
        return 1
    print("all remote execution checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:  # e.g. DEADLINE_EXCEEDED when no worker takes the action
        sys.exit(f"FAIL: {e.code().name}: {e.details()}")
