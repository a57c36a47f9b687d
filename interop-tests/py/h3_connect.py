"""An HTTP/3 CONNECT client built on aioquic, run against a Ferry edge's
tunnel port (UDP).

It opens a QUIC connection with ALPN h3 (optionally with a client
certificate), checks the server's chain against --ca and its SPIFFE ID
against --expect-id (SVIDs carry no DNS name, so aioquic's hostname check is
left out and the URI SAN is compared here), sends a plain RFC 9114 CONNECT
for --authority (ip:port of the application behind the edge), exchanges a
"hello" round trip, then sends --size pseudo-random bytes, ends its side of
the stream and reads the echo to the end. It prints one JSON line:
outcome = ok | refused | status | wrong_server_id | timeout | error.
"""

import argparse
import asyncio

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamReset

from common import payload, report, sha256, spiffe_id


class Client(QuicConnectionProtocol):
    """Collects the CONNECT stream's response and data."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.status = None
        self.data = bytearray()
        self.changed = asyncio.Event()
        self.ended = False
        self.reset = None
        self.terminated = None

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
        elif isinstance(event, StreamReset):
            self.reset = event.error_code
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.status = int(dict(ev.headers).get(b":status", b"0"))
                self.ended |= ev.stream_ended
            elif isinstance(ev, DataReceived):
                self.data += ev.data
                self.ended |= ev.stream_ended
        self.changed.set()

    async def until(self, cond, timeout):
        """Waits until cond() holds or the connection/stream is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (cond() or self.terminated or self.reset is not None):
            self.changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError()
            await asyncio.wait_for(self.changed.wait(), left)


def refused(proto, stage):
    t = proto.terminated
    report(
        outcome="refused",
        stage=stage,
        error_code=t.error_code if t else None,
        reason=t.reason_phrase if t else None,
        stream_reset=proto.reset,
        received=len(proto.data),
    )


async def main(args):
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    cfg.load_verify_locations(cafile=args.ca)
    if args.cert:
        cfg.load_cert_chain(args.cert, args.key)
    quic = QuicConnection(configuration=cfg)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Client(quic), remote_addr=(args.host, args.port)
    )
    try:
        proto.connect((args.host, args.port))
        try:
            await asyncio.wait_for(proto.wait_connected(), args.timeout)
        except ConnectionError:
            refused(proto, "handshake")
        server_id = spiffe_id(quic.tls._peer_certificate)
        if server_id != args.expect_id:
            report(outcome="wrong_server_id", server_id=server_id)

        sid = quic.get_next_available_stream_id()
        proto.h3.send_headers(
            sid, [(b":method", b"CONNECT"), (b":authority", args.authority.encode())]
        )
        proto.transmit()
        await proto.until(lambda: proto.status is not None, args.timeout)
        if proto.status is None:
            refused(proto, "request")
        if proto.status != 200:
            report(outcome="status", status=proto.status)

        # An interactive round trip first: the tunnel is a live byte stream.
        proto.h3.send_data(sid, b"hello", end_stream=False)
        proto.transmit()
        await proto.until(lambda: len(proto.data) >= 5, args.timeout)
        hello = bytes(proto.data[:5])

        body = payload(args.size, args.seed)
        proto.h3.send_data(sid, body, end_stream=True)
        proto.transmit()
        await proto.until(lambda: proto.ended, args.timeout)
        if proto.terminated or proto.reset is not None:
            refused(proto, "transfer")
        echoed = bytes(proto.data[5:])
        report(
            outcome="ok",
            status=proto.status,
            server_id=server_id,
            hello=hello.decode(errors="replace"),
            sent=len(body),
            sent_sha256=sha256(b"hello" + body),
            received=len(echoed),
            received_sha256=sha256(hello + echoed),
        )
    except asyncio.TimeoutError:
        report(outcome="timeout", status=proto.status, received=len(proto.data))
    finally:
        proto.close()
        transport.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--authority", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--expect-id", required=True)
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0)
    asyncio.run(main(p.parse_args()))
