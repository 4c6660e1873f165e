#!/usr/bin/python3
"""xenlab's BMC relay in a lab host's dom0 (installed by xenlab; see xenlab/lab/bmc_relay.py).

Usage: xenlab-bmc-relay LISTEN=TUNNEL ...   e.g. 127.0.1.1=10.0.2.101
Each LISTEN address gets a UDP socket on port 623; every client (address, port) of it gets
its own TCP connection to TUNNEL:623, over which each datagram goes as a 2-byte big-endian
length and its bytes. Python's standard library only: a dom0 has no xenlab.
"""

import select
import socket
import struct
import sys
import time

PORT = 623
IDLE_S = 60.0


def main(pairs):
    listeners = {}
    for pair in pairs:
        listen, _, tunnel = pair.partition("=")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen, PORT))
        listeners[sock] = tunnel
    links = {}  # (listener, client) -> [tcp socket, buffer, last use]
    by_tcp = {}
    while True:
        ready, _, _ = select.select(list(listeners) + list(by_tcp), [], [], 5.0)
        now = time.monotonic()
        for sock in ready:
            if sock in listeners:
                data, client = sock.recvfrom(2048)
                key = (sock, client)
                link = links.get(key)
                if link is None:
                    try:
                        tcp = socket.create_connection((listeners[sock], PORT), timeout=10)
                    except OSError as exc:
                        print(f"tunnel {listeners[sock]}: {exc}", file=sys.stderr, flush=True)
                        continue
                    link = links[key] = [tcp, bytearray(), now]
                    by_tcp[tcp] = key
                link[2] = now
                link[0].sendall(struct.pack(">H", len(data)) + data)
            elif sock in by_tcp:
                key = by_tcp[sock]
                link = links[key]
                chunk = sock.recv(65536)
                if not chunk:
                    close(links, by_tcp, key)
                    continue
                link[1] += chunk
                link[2] = now
                buffer = link[1]
                while len(buffer) >= 2:
                    (length,) = struct.unpack(">H", buffer[:2])
                    if len(buffer) < 2 + length:
                        break
                    key[0].sendto(bytes(buffer[2:2 + length]), key[1])
                    del buffer[:2 + length]
        for key in [k for k, link in links.items() if now - link[2] > IDLE_S]:
            close(links, by_tcp, key)


def close(links, by_tcp, key):
    tcp = links.pop(key)[0]
    by_tcp.pop(tcp, None)
    tcp.close()


if __name__ == "__main__":
    main(sys.argv[1:])
