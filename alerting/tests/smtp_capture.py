"""aiosmtpd handler for Vigil's email tests: appends one JSON line per
received message (subject, addresses, MIME parts decoded, whether the
session used TLS, and whether by STARTTLS or implicitly) to the file given
as the handler argument.

    python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c smtp_capture.Capture OUT.jsonl
"""
import email
import json
from email import policy


class Capture:
    def __init__(self, path):
        self.path = path

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 1:
            parser.error("Capture needs the output file as its only argument")
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        ssl_obj = server.transport.get_extra_info("ssl_object")
        parts = [
            {"type": p.get_content_type(), "body": p.get_content()}
            for p in msg.walk()
            if not p.is_multipart()
        ]
        rec = {
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "rcpt": list(envelope.rcpt_tos),
            "content_type": msg.get_content_type(),
            "parts": parts,
            # STARTTLS sets session.ssl; implicit TLS (SMTPS) does not, but
            # then the transport itself is the TLS one from the first byte.
            "tls": getattr(session, "ssl", None) is not None or ssl_obj is not None,
            "starttls": getattr(session, "ssl", None) is not None,
            "tls_version": ssl_obj.version() if ssl_obj is not None else None,
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"
