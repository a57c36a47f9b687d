"""An HTTP/2 CONNECT client (the `h2` library over Python's ssl), run
against a Ferry edge's TLS/TCP fallback port (the tunnel port, TCP).

It connects with TLS 1.3 and ALPN h2 (optionally with a client
certificate), checks the server's chain against --ca and its SPIFFE ID
against --expect-id, sends an RFC 9113 §8.5 CONNECT for --authority,
exchanges a "hello" round trip, sends --size pseudo-random bytes, ends its
side of the stream and reads the echo to the end, honouring flow control.
It prints one JSON line:
outcome = ok | refused | status | wrong_server_id | timeout | error.
"""

import argparse
import select
import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events
from cryptography import x509

from common import payload, report, sha256, spiffe_id


class Tunnel:
    """One TLS connection and one CONNECT stream on it."""

    def __init__(self, tls, deadline):
        self.tls = tls
        self.deadline = deadline
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.sid = None
        self.status = None
        self.data = bytearray()
        self.ended = False
        self.reset = None
        self.closed = None

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.tls.sendall(out)

    def pump(self):
        """Reads once (waiting at most until the deadline) and handles events."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        if not self.tls.pending():
            r, _, _ = select.select([self.tls], [], [], min(left, 0.2))
            if not r:
                return
        chunk = self.tls.recv(65536)
        if not chunk:
            self.closed = self.closed or "eof"
            return
        for ev in self.conn.receive_data(chunk):
            if isinstance(ev, h2.events.ResponseReceived):
                self.status = int(dict(ev.headers).get(":status", "0"))
            elif isinstance(ev, h2.events.DataReceived):
                self.data += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = f"goaway {ev.error_code}"
        self.flush()

    def until(self, cond):
        while not (cond() or self.reset is not None or self.closed):
            self.pump()

    def send(self, data, end):
        """Sends within the flow-control windows, reading meanwhile."""
        view = memoryview(data)
        while view:
            window = min(
                self.conn.local_flow_control_window(self.sid),
                self.conn.max_outbound_frame_size,
            )
            if window <= 0:
                self.pump()
                if self.reset is not None or self.closed:
                    return
                continue
            n = min(window, len(view))
            self.conn.send_data(self.sid, view[:n].tobytes())
            view = view[n:]
            self.flush()
        if end:
            self.conn.end_stream(self.sid)
            self.flush()


def main(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # SVIDs carry a URI SAN only: checked below
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["h2"])

    deadline = time.monotonic() + args.timeout
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    t = None
    stage = "handshake"
    try:
        tls = ctx.wrap_socket(sock)
        if tls.selected_alpn_protocol() != "h2":
            report(outcome="error", detail=f"alpn {tls.selected_alpn_protocol()}")
        server_id = spiffe_id(x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)))
        if server_id != args.expect_id:
            report(outcome="wrong_server_id", server_id=server_id)

        stage = "request"
        t = Tunnel(tls, deadline)
        t.conn.initiate_connection()
        t.flush()
        t.sid = t.conn.get_next_available_stream_id()
        t.conn.send_headers(t.sid, [(":method", "CONNECT"), (":authority", args.authority)])
        t.flush()
        t.until(lambda: t.status is not None)
        if t.status is None:
            report(outcome="refused", stage=stage, detail=t.closed, stream_reset=t.reset, received=0)
        if t.status != 200:
            report(outcome="status", status=t.status)

        stage = "transfer"
        t.send(b"hello", end=False)
        t.until(lambda: len(t.data) >= 5)
        hello = bytes(t.data[:5])
        body = payload(args.size, args.seed)
        t.send(body, end=True)
        t.until(lambda: t.ended)
        if not t.ended:
            report(outcome="refused", stage=stage, detail=t.closed, stream_reset=t.reset, received=len(t.data))
        echoed = bytes(t.data[5:])
        report(
            outcome="ok",
            status=t.status,
            server_id=server_id,
            hello=hello.decode(errors="replace"),
            sent=len(body),
            sent_sha256=sha256(b"hello" + body),
            received=len(echoed),
            received_sha256=sha256(hello + echoed),
        )
    except (ssl.SSLError, ConnectionError) as e:
        # TLS 1.3: the client's handshake completes before the server has
        # checked the client certificate; its alert arrives on the next read.
        report(outcome="refused", stage=stage, detail=f"{type(e).__name__}: {e}",
               received=len(t.data) if t else 0)
    except (TimeoutError, socket.timeout):
        report(outcome="timeout", stage=stage, received=len(t.data) if t else 0)


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
    main(p.parse_args())
