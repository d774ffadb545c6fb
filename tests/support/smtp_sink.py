#!/usr/bin/python3
"""An SMTP server on loopback for tests of the e-mail sender (Debian's python3-aiosmtpd).

Every accepted message is written to DIR as <n>.eml (the bytes as received, after the dot
unstuffing) beside <n>.envelope (MAIL FROM, then each RCPT TO, one a line); the .eml appears last
and whole (renamed into place), so a test may read it as soon as it exists.

RCPT TO an address containing "tempfail" is answered 450 and one containing "reject" 550.
--tls_cert/--tls_key offer STARTTLS (and require it before MAIL); with --implicit_tls the
connection is TLS from the start. --user/--password require AUTH (PLAIN or LOGIN) before MAIL.

Prints "smtp sink listening on 127.0.0.1:<port>" once it accepts connections; stops on SIGTERM.
(Not C++: keep it out of clang-format's file lists.)
"""

import argparse
import itertools
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "tempfail" in address:
            return "450 4.2.1 mailbox busy, try later (test sink)"
        if "reject" in address:
            return "550 5.1.1 no such mailbox (test sink)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            n = next(self.numbers)
        base = os.path.join(self.directory, str(n))
        with open(base + ".envelope", "w", encoding="utf-8") as f:
            f.write("\n".join([envelope.mail_from] + envelope.rcpt_tos) + "\n")
        with open(base + ".partial", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".partial", base + ".eml")
        return "250 2.0.0 stored as %d" % n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--tls_cert")
    parser.add_argument("--tls_key")
    parser.add_argument("--implicit_tls", action="store_true")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    kwargs = {}
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.implicit_tls:
            kwargs["ssl_context"] = context
        else:
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = True
    if args.user:
        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login.decode() == args.user
                  and auth_data.password.decode() == args.password)
            # handled=False: aiosmtpd answers 535 itself.
            return AuthResult(success=ok, handled=False)
        kwargs["authenticator"] = authenticate
        kwargs["auth_required"] = True
        # Without TLS the test still checks the AUTH exchange; real servers insist on TLS.
        kwargs["auth_require_tls"] = context is not None

    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port, **kwargs)
    controller.start()
    print("smtp sink listening on 127.0.0.1:%d" % args.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__" : sys.exit(main())
