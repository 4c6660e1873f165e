"""The heartbeat collector that runs on the services node (python3 there, no xenlab).

Its source is sent over SSH and started with systemd-run; it appends "NAME SEQ TIME"
lines (TIME: the services node's time.time()) to DIR/NAME.log, flushing five times a
second, so gaps in a guest's sequence can be measured after the fact.
"""

COLLECTOR_SOURCE = r'''
import os, socket, sys, time
port, directory = int(sys.argv[1]), sys.argv[2]
os.makedirs(directory, exist_ok=True)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
sock.bind(("0.0.0.0", port))
sock.settimeout(0.2)
files, last_flush = {}, time.monotonic()
while True:
    try:
        data = sock.recv(256)
        now = time.time()
        parts = data.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0].replace(b"-", b"").isalnum():
            name = parts[0].decode()
            f = files.get(name)
            if f is None:
                f = files[name] = open(os.path.join(directory, name + ".log"), "a")
            f.write("%s %s %.6f\n" % (name, parts[1].decode(), now))
    except socket.timeout:
        pass
    if time.monotonic() - last_flush > 0.2:
        for f in files.values():
            f.flush()
        last_flush = time.monotonic()
'''

DISK_PREFIX_SOURCE = r'''
import sys
path, record, tail = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
with open(path, "rb") as f:
    while True:
        block = f.read(record)
        if not block:
            break
        out.write(block)
        if block.count(0) == len(block):
            out.write(f.read(tail))
            break
'''
