"""demo_relay.py - the relay `make run` starts: an aiosmtpd server on
127.0.0.1 that accepts every message ("250 2.0.0 Ok: queued", as Postfix's
smtp-sink answers) and refuses one mailbox, any address whose local part is
"nobody" ("550 5.1.1 no such user", RFC 3463 bad destination mailbox), so
that the README's partial-delivery example (code 700) can be tried.  The
message itself is discarded.

Usage: demo_relay.py PORT   (prints nothing; stops on SIGTERM/SIGINT)
"""
import signal
import sys

from aiosmtpd.controller import Controller


class DemoHandler:
    """Refuses the mailbox nobody@..., accepts everything else."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@", 1)[0].lower() == "nobody":
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok: queued"


def main():
    port = int(sys.argv[1])
    ctl = Controller(DemoHandler(), hostname="127.0.0.1", port=port,
                     server_hostname="demo-relay.localhost",
                     data_size_limit=50 * 1024 * 1024)
    ctl.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        while not stop:
            signal.pause()
    finally:
        ctl.stop()


if __name__ == "__main__":
    main()
