#!/usr/bin/env python3
"""An independent kappa client: grpcio with stubs generated from proto/ by grpcio-tools.

It checks the wire contract from outside Rust: a valid submission works, and garbage, oversized,
wrong-token and wrong-version requests get the documented status codes while the server keeps
serving. Prints one line per check and a final "N passed, M failed"; exits non-zero on failure.

    python3 tests/python/wire_client.py --addr 127.0.0.1:7070 --token TOKEN --sweep FILE --protocol N
"""
import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stubs():
    out = tempfile.mkdtemp(prefix="kappa-stubs-")
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(proto_dir, "kappa", "v1", "kappa.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    return importlib.import_module("kappa.v1.kappa_pb2"), importlib.import_module("kappa.v1.kappa_pb2_grpc")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--sweep", required=True)
    ap.add_argument("--protocol", type=int, required=True, help="the protocol version the server speaks")
    a = ap.parse_args()
    pb, rpc = stubs()
    channel = grpc.insecure_channel(a.addr, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = rpc.CoordinatorStub(channel)
    good = [("authorization", f"Bearer {a.token}")]
    results = []

    def check(name, fn, want):
        try:
            fn()
            got = grpc.StatusCode.OK
        except grpc.RpcError as e:
            got = e.code()
        ok = got in want
        results.append(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got.name} (expected {' or '.join(w.name for w in want)})")

    with open(a.sweep) as f:
        spec = f.read()

    def submit():
        r = stub.Submit(pb.SubmitRequest(spec=spec, file_name="client.toml"), metadata=good, timeout=30)
        assert r.total > 0, r

    check("valid submission", submit, [grpc.StatusCode.OK])
    check("no token", lambda: stub.Status(pb.StatusRequest(), timeout=10), [grpc.StatusCode.UNAUTHENTICATED])
    check("wrong token", lambda: stub.Status(pb.StatusRequest(), metadata=[("authorization", "Bearer nope")], timeout=10),
          [grpc.StatusCode.UNAUTHENTICATED])
    check("invalid sweep file", lambda: stub.Submit(pb.SubmitRequest(spec="version = 1\nname = 3\n"), metadata=good, timeout=10),
          [grpc.StatusCode.INVALID_ARGUMENT])
    check("malformed trial id", lambda: stub.Report(pb.ReportRequest(worker_id=1, trial_id="not-an-id", attempt=1,
                                                                    failed=pb.Failed(error="x")), metadata=good, timeout=10),
          [grpc.StatusCode.INVALID_ARGUMENT])
    check("report without an outcome", lambda: stub.Report(pb.ReportRequest(worker_id=1, trial_id="0123456789abcdef", attempt=1),
                                                           metadata=good, timeout=10),
          [grpc.StatusCode.INVALID_ARGUMENT])
    check("wrong protocol version", lambda: stub.Register(pb.RegisterRequest(protocol_version=999, name="py", slots=1),
                                                         metadata=good, timeout=10),
          [grpc.StatusCode.FAILED_PRECONDITION])
    check("zero slots", lambda: stub.Register(pb.RegisterRequest(protocol_version=a.protocol, name="py", slots=0), metadata=good, timeout=10),
          [grpc.StatusCode.INVALID_ARGUMENT])
    check("too many code versions", lambda: stub.Register(pb.RegisterRequest(protocol_version=a.protocol, name="py", slots=1,
                                                                             code_versions=["kappa-sim/x"] * 17),
                                                          metadata=good, timeout=10),
          [grpc.StatusCode.INVALID_ARGUMENT])
    check("unknown worker", lambda: stub.Lease(pb.LeaseRequest(worker_id=987654, max_trials=1), metadata=good, timeout=10),
          [grpc.StatusCode.NOT_FOUND])
    garbage = channel.unary_unary("/kappa.v1.Coordinator/Submit", request_serializer=None, response_deserializer=None)
    check("garbage bytes", lambda: garbage(b"\xff\xff\xff\xff\x0f\x00garbage", metadata=good, timeout=10),
          [grpc.StatusCode.INVALID_ARGUMENT])
    check("oversized request (20 MiB)", lambda: stub.Submit(pb.SubmitRequest(spec="#" * (20 << 20)), metadata=good, timeout=30),
          [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE])

    def still_serving():
        r = stub.Status(pb.StatusRequest(), metadata=good, timeout=10)
        assert len(r.sweeps) >= 1, r

    check("still serving afterwards", still_serving, [grpc.StatusCode.OK])
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
