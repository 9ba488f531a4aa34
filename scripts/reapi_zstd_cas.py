#!/usr/bin/env python3
"""A REAPI CAS and Action Cache that offers zstd `compressed-blobs`, for
the tests of cachepot's compressed transfers.

No engine installable from PyPI, npm, crates.io or Debian offers a
compressor (BuildGrid 0.9.1 does not; bazel-remote and NativeLink are not
packaged there), so this test double stands in: blobs in memory, SHA-256
digests, `supported_compressors` and `supported_batch_update_compressors`
[ZSTD]. With --require-zstd every non-empty blob moved uncompressed is
refused (INVALID_ARGUMENT), so a round trip through it proves that each
path (batch update, batch read, ByteStream write and read) compresses.

  python reapi_zstd_cas.py --port 18983 --require-zstd

It needs grpcio and BuildGrid's generated protos (the BuildGrid venv of
scripts/services.sh) and the `zstandard` module (PyPI).
"""

import argparse
import hashlib
import threading
from concurrent import futures

import grpc
import zstandard

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.build.bazel.semver import semver_pb2
from buildgrid._protos.google.bytestream import bytestream_pb2 as bs
from buildgrid._protos.google.bytestream import bytestream_pb2_grpc as bs_grpc
from buildgrid._protos.google.rpc import code_pb2, status_pb2

BATCH_LIMIT = 4 * 1024 * 1024
CHUNK = 1024 * 1024


class Store:
    def __init__(self, require):
        self.blobs = {}
        self.results = {}
        self.require = require
        self.lock = threading.Lock()

    def put(self, digest, data):
        if hashlib.sha256(data).hexdigest() != digest.hash or len(data) != digest.size_bytes:
            return False
        with self.lock:
            self.blobs[digest.hash] = data
        return True

    def get(self, digest):
        with self.lock:
            return self.blobs.get(digest.hash)


def refuse_plain(store, context, size):
    """In --require-zstd mode, aborts a call moving a non-empty blob as is."""
    if store.require and size > 0:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "uncompressed transfer refused (--require-zstd)")


class Capabilities(re_grpc.CapabilitiesServicer):
    def GetCapabilities(self, request, context):
        return re.ServerCapabilities(
            cache_capabilities=re.CacheCapabilities(
                digest_functions=[re.DigestFunction.SHA256],
                action_cache_update_capabilities=re.ActionCacheUpdateCapabilities(update_enabled=True),
                max_batch_total_size_bytes=BATCH_LIMIT,
                supported_compressors=[re.Compressor.ZSTD],
                supported_batch_update_compressors=[re.Compressor.ZSTD],
            ),
            low_api_version=semver_pb2.SemVer(major=2),
            high_api_version=semver_pb2.SemVer(major=2, minor=3),
        )


class Cas(re_grpc.ContentAddressableStorageServicer):
    def __init__(self, store):
        self.store = store

    def FindMissingBlobs(self, request, context):
        missing = [d for d in request.blob_digests if d.size_bytes > 0 and self.store.get(d) is None]
        return re.FindMissingBlobsResponse(missing_blob_digests=missing)

    def BatchUpdateBlobs(self, request, context):
        responses = []
        for r in request.requests:
            data = r.data
            if r.compressor == re.Compressor.ZSTD:
                data = zstandard.ZstdDecompressor().decompress(data, max_output_size=r.digest.size_bytes)
            elif r.compressor == re.Compressor.IDENTITY:
                refuse_plain(self.store, context, len(data))
            else:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unsupported compressor")
            ok = self.store.put(r.digest, data)
            code = code_pb2.OK if ok else code_pb2.INVALID_ARGUMENT
            responses.append(re.BatchUpdateBlobsResponse.Response(
                digest=r.digest, status=status_pb2.Status(code=code)))
        return re.BatchUpdateBlobsResponse(responses=responses)

    def BatchReadBlobs(self, request, context):
        zstd = re.Compressor.ZSTD in request.acceptable_compressors
        responses = []
        for d in request.digests:
            data = self.store.get(d)
            if data is None:
                responses.append(re.BatchReadBlobsResponse.Response(
                    digest=d, status=status_pb2.Status(code=code_pb2.NOT_FOUND)))
                continue
            if zstd:
                responses.append(re.BatchReadBlobsResponse.Response(
                    digest=d, data=zstandard.ZstdCompressor().compress(data),
                    compressor=re.Compressor.ZSTD, status=status_pb2.Status(code=code_pb2.OK)))
            else:
                refuse_plain(self.store, context, len(data))
                responses.append(re.BatchReadBlobsResponse.Response(
                    digest=d, data=data, status=status_pb2.Status(code=code_pb2.OK)))
        return re.BatchReadBlobsResponse(responses=responses)


def parse_resource(name):
    """(compressed, hash, size) of `[instance/][uploads/UUID/]blobs|compressed-blobs/zstd/HASH/SIZE`."""
    parts = name.split("/")
    for i, p in enumerate(parts):
        if p == "blobs" and len(parts) >= i + 3:
            return False, parts[i + 1], int(parts[i + 2])
        if p == "compressed-blobs" and len(parts) >= i + 4:
            if parts[i + 1] != "zstd":
                raise ValueError(f"compressor {parts[i + 1]}")
            return True, parts[i + 2], int(parts[i + 3])
    raise ValueError(f"resource {name}")


class ByteStream(bs_grpc.ByteStreamServicer):
    def __init__(self, store):
        self.store = store

    def Read(self, request, context):
        try:
            compressed, hash_, size = parse_resource(request.resource_name)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        data = self.store.get(re.Digest(hash=hash_, size_bytes=size))
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such blob")
        if compressed:
            data = zstandard.ZstdCompressor().compress(data)
        else:
            refuse_plain(self.store, context, len(data))
        for at in range(0, max(len(data), 1), CHUNK):
            yield bs.ReadResponse(data=data[at:at + CHUNK])

    def Write(self, request_iterator, context):
        parts, name, expected = [], None, 0
        for req in request_iterator:
            if name is None:
                name = req.resource_name
            if req.write_offset != expected:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"offset {req.write_offset}, expected {expected}")
            parts.append(req.data)
            expected += len(req.data)
            if req.finish_write:
                break
        try:
            compressed, hash_, size = parse_resource(name or "")
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        data = b"".join(parts)
        if compressed:
            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        else:
            refuse_plain(self.store, context, len(data))
        if not self.store.put(re.Digest(hash=hash_, size_bytes=size), data):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "content does not match the digest")
        return bs.WriteResponse(committed_size=size)


class ActionCache(re_grpc.ActionCacheServicer):
    def __init__(self, store):
        self.store = store

    def GetActionResult(self, request, context):
        with self.store.lock:
            result = self.store.results.get(request.action_digest.hash)
        if result is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no result")
        return result

    def UpdateActionResult(self, request, context):
        with self.store.lock:
            self.store.results[request.action_digest.hash] = request.action_result
        return request.action_result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--require-zstd", action="store_true",
                    help="refuse every non-empty blob moved uncompressed")
    args = ap.parse_args()
    store = Store(args.require_zstd)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                                  ("grpc.max_send_message_length", 64 * 1024 * 1024)])
    re_grpc.add_CapabilitiesServicer_to_server(Capabilities(), server)
    re_grpc.add_ContentAddressableStorageServicer_to_server(Cas(store), server)
    re_grpc.add_ActionCacheServicer_to_server(ActionCache(store), server)
    bs_grpc.add_ByteStreamServicer_to_server(ByteStream(store), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"reapi_zstd_cas: listening on 127.0.0.1:{args.port}"
          f"{' (zstd required)' if args.require_zstd else ''}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
