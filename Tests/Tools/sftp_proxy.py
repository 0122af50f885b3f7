#!/usr/bin/env python3
"""A byte-level TCP proxy for the SFTP tests (counts connections, cuts them mid-transfer). Standard library only.

    sftp_proxy.py --upstream 127.0.0.1:PORT --control CTRL --stats STATS --port-file F [--max-seconds 600]

Listens on an ephemeral 127.0.0.1 port (written to --port-file) and forwards every connection to --upstream,
which must be a loopback address. Exits by itself after --max-seconds. The control file holds one word,
re-read every 20 ms (missing/empty = pass):

    pass     forward everything
    cut:N    reset any connection once it has forwarded N more client->server bytes after this mode was set
             (an upload caught in the middle); new connections count from their start
    drop     reset every open connection and every new one

The stats file is rewritten atomically (JSON): {"connections": N, "cut": N, "dropped": N, "mode": "...", "pid": N}.
"""
import argparse, ipaddress, json, os, signal, socket, struct, sys, threading, time

LOCK = threading.Lock()
STATS = {"connections": 0, "cut": 0, "dropped": 0}
MODE = ["pass"]
CONNS = {}  # id -> [client, upstream, bytes_up_since_mode]


def write_stats(path):
    with LOCK:
        data = dict(STATS, mode=MODE[0], pid=os.getpid())
    tmp = "%s.tmp.%d" % (path, threading.get_ident())
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def kill(cid, counter, stats):
    with LOCK:
        c = CONNS.pop(cid, None)
        if c:
            STATS[counter] += 1
    if c:
        reset(c[0]); reset(c[1])
        write_stats(stats)


def pump(cid, src, dst, upstream_dir, stats):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if upstream_dir:
                with LOCK:
                    c = CONNS.get(cid)
                    mode = MODE[0]
                    if c is not None:
                        c[2] += len(data)
                        over = mode.startswith("cut:") and c[2] >= int(mode[4:])
                    else:
                        over = False
                if over:
                    kill(cid, "cut", stats)
                    return
            dst.sendall(data)
    except OSError:
        pass
    with LOCK:
        c = CONNS.pop(cid, None)
    if c:
        for s in (c[0], c[1]):
            try:
                s.close()
            except OSError:
                pass


def watch_control(control, stats):
    last = None
    while True:
        try:
            with open(control) as f:
                mode = f.read().strip() or "pass"
        except OSError:
            mode = "pass"
        if mode != last:
            last = mode
            with LOCK:
                MODE[0] = mode
                for c in CONNS.values():
                    c[2] = 0
                ids = list(CONNS) if mode == "drop" else []
            for cid in ids:
                kill(cid, "dropped", stats)
            write_stats(stats)
        time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()
    # A parent that blocks SIGTERM (a test runner's threads) passes its mask on: unblock so `kill` works.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    host, port = a.upstream.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("upstream must be a loopback address")
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    write_stats(a.stats)
    threading.Thread(target=watch_control, args=(a.control, a.stats), daemon=True).start()
    deadline = time.time() + a.max_seconds
    threading.Thread(target=lambda: (time.sleep(max(0, deadline - time.time())), os._exit(0)), daemon=True).start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(lsock.getsockname()[1]))
    os.replace(tmp, a.port_file)
    print("sftp_proxy listening on 127.0.0.1:%d" % lsock.getsockname()[1], flush=True)
    cid = 0
    while True:
        client, _ = lsock.accept()
        cid += 1
        with LOCK:
            STATS["connections"] += 1
            mode = MODE[0]
        if mode == "drop":
            reset(client)
            with LOCK:
                STATS["dropped"] += 1
            write_stats(a.stats)
            continue
        try:
            up = socket.create_connection((host, int(port)), timeout=5)
            up.settimeout(None)
        except OSError:
            reset(client)
            continue
        with LOCK:
            CONNS[cid] = [client, up, 0]
        write_stats(a.stats)
        threading.Thread(target=pump, args=(cid, client, up, True, a.stats), daemon=True).start()
        threading.Thread(target=pump, args=(cid, up, client, False, a.stats), daemon=True).start()


if __name__ == "__main__":
    main()
