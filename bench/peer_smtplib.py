#!/usr/bin/python3
"""peer_smtplib.py PORT THREADS MESSAGES - Python's smtplib as a peer in
`make bench`: THREADS threads, each holding one connection to 127.0.0.1:PORT,
send MESSAGES 1 KiB messages in all (one recipient each)."""
import smtplib
import sys
import threading

port, threads, total = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = ("Subject: bench\r\n\r\n" + ("x" * 62 + "\r\n") * 16).encode()
failed = []


def work(count):
    s = smtplib.SMTP("127.0.0.1", port)
    s.ehlo("localhost")
    for _ in range(count):
        s.sendmail("sender@example.org", ["bench@example.org"], body)
    s.quit()


ts = [threading.Thread(target=work, args=(total // threads + (i < total % threads),))
      for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
