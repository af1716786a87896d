#!/usr/bin/python3
"""free-ports.py NAME... - print "NAME PORT" lines, one free 127.0.0.1 port
for each name (all bound at once, then released, so they are distinct).
Used by postfix-peer.sh and exim-peer.sh to place their listeners."""
import socket
import sys

socks = []
for name in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append((name, s))
for name, s in socks:
    print(name, s.getsockname()[1])
for _, s in socks:
    s.close()
