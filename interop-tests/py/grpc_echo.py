"""A grpcio server and client for the interop tests, with no generated
code: methods are registered with a generic handler and messages are raw
bytes.

Service `ferry.interop.Echo`:
  Echo (unary)            returns the request; initial metadata `x-client-id`
                          = the `x-ferry-client-id` the server edge added
  Fail (unary)            aborts with NOT_FOUND and details "no <request>"
  Count (server stream)   request b"N": yields b"item-0" .. b"item-(N-1)"
  Chat (bidi stream)      answers each message with it reversed

`grpc_echo.py server` prints {"port": N} (bound to 127.0.0.1:0) and serves
until killed. `grpc_echo.py client --target HOST:PORT` calls every method
and prints one JSON line with what it got.
"""

import argparse
import hashlib
import json
import random
import sys
from concurrent import futures

import grpc

SERVICE = "ferry.interop.Echo"


def ident(b):
    return b


def echo(request, context):
    client_id = dict(context.invocation_metadata()).get("x-ferry-client-id", "")
    context.send_initial_metadata((("x-client-id", client_id),))
    return request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no " + request.decode())


def count(request, context):
    for i in range(int(request.decode())):
        yield f"item-{i}".encode()


def chat(requests, context):
    for r in requests:
        yield r[::-1]


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo, ident, ident),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, ident, ident),
        "Count": grpc.unary_stream_rpc_method_handler(count, ident, ident),
        "Chat": grpc.stream_stream_rpc_method_handler(chat, ident, ident),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    server.wait_for_termination()


def client(target, timeout):
    out = {}
    with grpc.insecure_channel(target) as ch:
        call = lambda kind, name: getattr(ch, kind)(
            f"/{SERVICE}/{name}", request_serializer=ident, response_deserializer=ident
        )
        resp, c = call("unary_unary", "Echo").with_call(
            b"ping", timeout=timeout, metadata=(("x-test", "grpcio"),)
        )
        out["echo"] = {
            "response": resp.decode(),
            "code": c.code().name,
            "client_id": dict(c.initial_metadata()).get("x-client-id", ""),
        }

        big = random.Random(9).randbytes(1 << 20)
        resp = call("unary_unary", "Echo")(big, timeout=timeout)
        out["big_echo"] = {
            "sent_sha256": hashlib.sha256(big).hexdigest(),
            "received_sha256": hashlib.sha256(resp).hexdigest(),
            "received": len(resp),
        }

        try:
            call("unary_unary", "Fail")(b"such thing", timeout=timeout)
            out["fail"] = {"code": "OK"}
        except grpc.RpcError as e:
            out["fail"] = {"code": e.code().name, "details": e.details()}

        items = call("unary_stream", "Count")(b"50", timeout=timeout)
        out["count"] = [i.decode() for i in items]

        msgs = [f"message-{i}".encode() for i in range(20)]
        replies = call("stream_stream", "Chat")(iter(msgs), timeout=timeout)
        out["chat"] = [r.decode() for r in replies]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--target")
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    if a.mode == "server":
        serve()
    else:
        client(a.target, a.timeout)
    sys.exit(0)
