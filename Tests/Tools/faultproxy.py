#!/usr/bin/env python3
"""A small fault-injecting TCP proxy for HTTP/1.1 (S3) traffic, for tests only. Standard library only.

    faultproxy.py --upstream 127.0.0.1:8333 --control CTRL --stats STATS [--port-file F] [--max-seconds 600]

Listens on 127.0.0.1 only (an ephemeral port unless --port is given; the port is printed as
`faultproxy listening on 127.0.0.1:PORT` and written to --port-file) and forwards every connection
to --upstream, which must be a loopback address. Exits by itself after --max-seconds.

The control file holds one word, re-read every 50 ms (a missing or empty file means `pass`):

    pass   forward everything
    drop   reset every open connection now, and reset new ones as soon as they are accepted
    stall  accept connections but forward nothing in either direction while the mode lasts
    500    answer each new request with `HTTP/1.1 500 Internal Server Error` (S3 XML body, InternalError)
    503    answer each new request with `HTTP/1.1 503 Slow Down` (S3 XML body, SlowDown)
    hold-put  forward PUT bodies (Content-Length) up to their middle, then hold them there while the mode
           lasts (an upload caught in the middle); everything else is forwarded
    delay-N  forward everything, each request N milliseconds after its head arrived (store latency)
    cut-once-N  forward everything, but reset the first connection whose responses pass N bytes right there
           (once per proxy run: a download whose connection drops in the middle; counted as `cut`)

Requests are counted by parsing the client side of each connection (request line and headers, then a
Content-Length or chunked body). The stats file is rewritten atomically (JSON) whenever a counter changes:

    {"connections": N, "requests": N, "forwarded": N, "faulted": N, "reset": N, "stalled": N, "held": N, "cut": N, "mode": "...", "pid": N}

(`faulted`: requests answered with 500/503; `reset`: connections reset in drop mode; `stalled`: transfers that
were held up by a stall; `held`: PUT bodies held in their middle by hold-put.)

and every request is logged to stdout as `REQ <unix time> <mode> <METHOD> <target>`.
"""
import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

MODES = ("pass", "drop", "stall", "500", "503", "hold-put")


class State:
    def __init__(self, control, stats):
        self.control = control
        self.stats_path = stats
        self.lock = threading.Lock()
        self.mode = "pass"
        self.counters = {"connections": 0, "requests": 0, "forwarded": 0, "faulted": 0, "reset": 0, "stalled": 0, "held": 0,
                         "cut": 0}
        self.conns = set()
        self.write_stats()

    def bump(self, name, n=1):
        with self.lock:
            self.counters[name] += n
        self.write_stats()

    def write_stats(self):
        with self.lock:
            data = dict(self.counters, mode=self.mode, pid=os.getpid())
        tmp = "%s.tmp.%d" % (self.stats_path, threading.get_ident())
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.stats_path)

    def claim_cut(self):
        """True for the one connection that cut-once-N cuts."""
        with self.lock:
            if self.counters["cut"]:
                return False
            self.counters["cut"] = 1
        self.write_stats()
        return True

    def read_control(self):
        try:
            with open(self.control) as f:
                word = f.read().strip()
        except OSError:
            word = ""
        word = word or "pass"
        if word not in MODES and not (word.startswith("delay-") and word[6:].isdigit()) and \
                not (word.startswith("cut-once-") and word[9:].isdigit()):
            log("ignoring unknown mode %r" % word)
            return
        if word != self.mode:
            with self.lock:
                self.mode = word
                conns = list(self.conns)
            log("mode %s" % word)
            self.write_stats()
            if word == "drop":
                for c in conns:
                    c.reset()


def log(msg):
    sys.stdout.write("%s\n" % msg)
    sys.stdout.flush()


def hard_close(sock):
    """Closes with RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def error_response(code):
    if code == "500":
        status, s3code, msg = "500 Internal Server Error", "InternalError", "faultproxy: injected 500"
    else:
        status, s3code, msg = "503 Slow Down", "SlowDown", "faultproxy: injected 503"
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<RequestId>faultproxy</RequestId></Error>' % (s3code, msg)).encode()
    head = ("HTTP/1.1 %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, len(body))).encode()
    return head + body


class Conn:
    """One proxied connection: a client->upstream pump that parses requests and an upstream->client pump."""

    def __init__(self, state, client, upstream_addr, deadline):
        self.state = state
        self.client = client
        self.upstream_addr = upstream_addr
        self.deadline = deadline
        self.upstream = None
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def reset(self):
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
        self.state.bump("reset")
        hard_close(self.client)
        if self.upstream is not None:
            hard_close(self.upstream)

    def close(self):
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for s in (self.client, self.upstream):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def wait_while_stalled(self):
        if self.state.mode != "stall":
            return
        self.state.bump("stalled")
        while self.state.mode == "stall" and not self.closed.is_set() and time.time() < self.deadline:
            time.sleep(0.05)

    def recv(self, sock):
        """Returns bytes, b'' at EOF, or None when the connection was closed under us."""
        while not self.closed.is_set():
            try:
                return sock.recv(65536)
            except socket.timeout:
                if time.time() >= self.deadline:
                    return None
                continue
            except OSError:
                return None
        return None

    def send(self, sock, data):
        self.wait_while_stalled()
        if self.closed.is_set():
            return False
        if self.state.mode == "drop":
            self.reset()
            return False
        view = memoryview(data)
        while view:
            if self.closed.is_set() or time.time() >= self.deadline:
                return False
            try:
                n = sock.send(view)
            except socket.timeout:
                continue  # the peer is slow to read; keep trying (sockets use a 0.2 s timeout for polling)
            except OSError:
                return False
            view = view[n:]
        return True

    def run(self):
        with self.state.lock:
            self.state.conns.add(self)
        try:
            self.client.settimeout(0.2)
            if self.state.mode == "drop":
                self.reset()
                return
            self.wait_while_stalled()
            try:
                self.upstream = socket.create_connection(self.upstream_addr, timeout=5)
                self.upstream.settimeout(0.2)
            except OSError as e:
                log("upstream connect failed: %s" % e)
                self.reset()
                return
            t = threading.Thread(target=self.pump_responses, daemon=True)
            t.start()
            self.pump_requests()
            self.close()  # the client is gone (or was answered/reset): end the response pump too
            t.join(timeout=1)
        finally:
            self.close()
            with self.state.lock:
                self.state.conns.discard(self)

    def pump_responses(self):
        forwarded = 0
        while not self.closed.is_set():
            data = self.recv(self.upstream)
            if not data:
                break
            mode = self.state.mode
            if mode.startswith("cut-once-") and forwarded + len(data) > int(mode[9:]) and self.state.claim_cut():
                keep = int(mode[9:]) - forwarded
                self.send(self.client, data[:keep])
                log("CUT %.3f after %d response bytes" % (time.time(), forwarded + keep))
                self.reset()
                return
            if not self.send(self.client, data):
                break
            forwarded += len(data)
        self.close()

    def pump_requests(self):
        buf = b""
        while not self.closed.is_set():
            # Request line and headers.
            while b"\r\n\r\n" not in buf:
                data = self.recv(self.client)
                if not data:
                    return
                buf += data
                if len(buf) > 1 << 20:
                    log("header section too large; closing")
                    return
            end = buf.index(b"\r\n\r\n") + 4
            head, buf = buf[:end], buf[end:]
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            method, target = (parts[0], parts[1]) if len(parts) >= 2 else (lines[0], "")
            length, chunked = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "content-length":
                    length = int(value or "0")
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            self.wait_while_stalled()
            mode = self.state.mode
            log("REQ %.3f %s %s %s" % (time.time(), mode, method, target))
            self.state.bump("requests")
            if mode == "drop":
                self.reset()
                return
            if mode in ("500", "503"):
                self.state.bump("faulted")
                self.answer_error(mode)
                return
            if mode.startswith("delay-"):
                time.sleep(int(mode[6:]) / 1000.0)
            self.state.bump("forwarded")
            if not self.send(self.upstream, head):
                return
            # Body.
            if chunked:
                buf = self.forward_chunked(buf)
                if buf is None:
                    return
            else:
                # hold-put: a PUT body is forwarded up to its middle, then held there while the mode lasts.
                half = length // 2 if method == "PUT" and length > 1 else -1
                sent, held = 0, False
                while length > 0:
                    if not buf:
                        buf = self.recv(self.client)
                        if not buf:
                            return
                    take = length
                    if not held and sent < half:
                        take = min(take, half - sent)
                    piece, buf = buf[:take], buf[take:]
                    length -= len(piece)
                    if not self.send(self.upstream, piece):
                        return
                    sent += len(piece)
                    if not held and sent == half and self.state.mode == "hold-put":
                        held = True
                        self.state.bump("held")
                        log("HOLD %.3f PUT %s at %d of %d bytes" % (time.time(), target, sent, sent + length))
                        # Keep reading the client meanwhile: when it goes away (say, killed), the upload must stay
                        # unfinished, so the upstream connection is reset instead of being sent the rest.
                        while self.state.mode == "hold-put" and not self.closed.is_set() and time.time() < self.deadline:
                            try:
                                data = self.client.recv(65536)
                            except socket.timeout:
                                continue
                            except OSError:
                                data = b""
                            if not data:
                                log("HOLD client went away; resetting the upstream connection")
                                self.reset()
                                return
                            buf += data

    def forward_chunked(self, buf):
        """Forwards one chunked body; returns the bytes after it, or None on failure."""
        while True:
            while b"\r\n" not in buf:
                data = self.recv(self.client)
                if not data:
                    return None
                buf += data
            i = buf.index(b"\r\n")
            size = int(buf[:i].split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # The last-chunk line ends at i + 2; optional trailers follow, then an empty line.
                while buf.find(b"\r\n\r\n", i) < 0:
                    data = self.recv(self.client)
                    if not data:
                        return None
                    buf += data
                j = buf.find(b"\r\n\r\n", i) + 4
                if not self.send(self.upstream, buf[:j]):
                    return None
                return buf[j:]
            need = i + 2 + size + 2
            while len(buf) < need:
                data = self.recv(self.client)
                if not data:
                    return None
                buf += data
            if not self.send(self.upstream, buf[:need]):
                return None
            buf = buf[need:]

    def answer_error(self, code):
        """Sends an S3-style error response with `Connection: close`, then drains the client briefly and closes.
        The request body is not forwarded; draining (rather than closing at once) avoids a reset that could
        destroy the response before the client reads it."""
        try:
            self.client.sendall(error_response(code))
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            return
        end = time.time() + 3
        while time.time() < end and not self.closed.is_set():
            try:
                if not self.client.recv(65536):
                    break
            except socket.timeout:
                continue
            except OSError:
                break


def parse_upstream(s):
    s = s.split("://", 1)[-1].rstrip("/")
    host, _, port = s.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise SystemExit("faultproxy: upstream must be a loopback address, got %r" % host)
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT or http://HOST:PORT (loopback only)")
    ap.add_argument("--control", required=True, help="file holding the mode word")
    ap.add_argument("--stats", required=True, help="JSON counters, rewritten atomically")
    ap.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (default: ephemeral)")
    ap.add_argument("--port-file", help="write the listening port here")
    ap.add_argument("--max-seconds", type=float, default=600, help="exit after this long (default 600)")
    args = ap.parse_args()

    upstream = parse_upstream(args.upstream)
    deadline = time.time() + args.max_seconds
    state = State(args.control, args.stats)
    state.read_control()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(64)
    srv.settimeout(0.05)
    port = srv.getsockname()[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    log("faultproxy listening on 127.0.0.1:%d -> %s:%d (exits after %.0f s)" % (port, upstream[0], upstream[1],
                                                                              args.max_seconds))

    while time.time() < deadline:
        state.read_control()
        try:
            client, _ = srv.accept()
        except socket.timeout:
            continue
        state.bump("connections")
        conn = Conn(state, client, upstream, deadline)
        threading.Thread(target=conn.run, daemon=True).start()
    log("faultproxy: lifetime of %.0f s over, exiting" % args.max_seconds)
    srv.close()
    with state.lock:
        conns = list(state.conns)
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
