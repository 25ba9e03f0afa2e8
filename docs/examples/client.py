#!/usr/bin/env python3
"""A complete lmpool client in Python, using only pyzmq (Debian python3-zmq).

It speaks the wire protocol of docs/protocol.md: a DEALER socket, one JSON
object per frame, a client-chosen request id, streamed "token" events, then
one "done" or "error" event.

    client.py [--endpoint E] generate --model M [--prompt TEXT | TEXT] [--max-tokens N] ...
    client.py [--endpoint E] chat --model M [--system TEXT] [--message TEXT]...
    client.py [--endpoint E] models | stats | health

Generation options may also come before the command's name:
    client.py --endpoint E --model M --max-tokens 8 generate "Once upon a time"

The generated text goes to stdout as it streams; the figures of the "done"
event go to stderr. Exit status: 0 ok, 2 usage, and for an error event one
status per stable code (see EXIT_CODES); a daemon that does not answer
within --timeout-ms counts as "timeout".
"""

import argparse
import itertools
import json
import os
import signal
import sys
import time

import zmq

EXIT_CODES = {
    "bad_request": 3,
    "unknown_model": 4,
    "busy": 5,
    "too_long": 6,
    "timeout": 7,
    "worker_lost": 8,
    "cancelled": 9,
    "internal": 10,
    "slow_consumer": 11,
    "model_failed": 12,
}


KNOWN_EVENTS = {"token", "done", "error", "cancelled", "models", "stats", "health"}


def default_endpoint():
    """The endpoint lmpoold binds by default (docs/protocol.md)."""
    if os.environ.get("LMPOOL_ENDPOINT"):
        return os.environ["LMPOOL_ENDPOINT"]
    if os.environ.get("RUNTIME_DIRECTORY"):
        return "ipc://%s/lmpool.sock" % os.environ["RUNTIME_DIRECTORY"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return "ipc://%s/lmpool/lmpool.sock" % os.environ["XDG_RUNTIME_DIR"]
    return "ipc:///tmp/lmpool-%d/lmpool.sock" % os.getuid()


class LmpoolError(Exception):
    """An error event (or no answer in time): code is the protocol's."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class Client:
    """One DEALER socket; one request at a time, events matched by id."""

    def __init__(self, endpoint, timeout_ms=60000):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.ids = ("py%d-%d" % (os.getpid(), n) for n in itertools.count(1))

    def close(self):
        self.sock.close()
        self.ctx.term()

    def _send(self, request):
        request = dict(request, v=1, id=next(self.ids))
        self.sock.send(json.dumps(request, ensure_ascii=False).encode("utf-8"))
        return request["id"]

    def _events(self, request_id):
        """Yields this request's events; waits at most timeout_ms for each."""
        while True:
            if not self.sock.poll(self.timeout_ms):
                self._send({"type": "cancel", "target": request_id})
                raise LmpoolError("timeout", "no answer from %s in %d ms" % (self.endpoint, self.timeout_ms))
            frames = self.sock.recv_multipart()
            if frames and frames[0] == b"" and len(frames) > 1:
                frames = frames[1:]  # the delimiter of a REQ-style envelope
            try:
                event = json.loads(frames[0])
                kind = event["event"]
            except (ValueError, KeyError, TypeError):
                raise LmpoolError("internal", "the daemon sent something that is not an event")
            if kind not in KNOWN_EVENTS:
                continue  # added by a later protocol version
            if event.get("id") not in (request_id, None):
                continue  # a late event of a request given up on
            if event["event"] == "error":
                raise LmpoolError(event.get("code", "internal"), event.get("message", ""))
            yield event

    def generate(self, on_text=None, **request):
        """Runs a generate or chat request; returns the done event with the
        whole text in done["text"]. on_text(str) sees each token's text.
        Ctrl-C (KeyboardInterrupt) cancels the request on the daemon."""
        request_id = self._send(request)
        parts = []
        try:
            for event in self._events(request_id):
                if event["event"] == "token":
                    parts.append(event["text"])
                    if on_text:
                        on_text(event["text"])
                elif event["event"] == "done":
                    if "text" not in event:
                        event["text"] = "".join(parts)
                    return event
        except KeyboardInterrupt:
            self._send({"type": "cancel", "target": request_id})
            raise

    def query(self, kind):
        """models, stats or health: the answer event as a dict."""
        request_id = self._send({"type": kind})
        return next(self._events(request_id))


def sampling(args):
    """The request fields the command line set (others: model defaults)."""
    fields = {}
    for name in ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed", "timeout_ms"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    if args.stop:
        fields["stop"] = args.stop
    if args.no_stream:
        fields["stream"] = False
    return fields


def print_figures(done):
    usage, timings = done.get("usage", {}), done.get("timings", {})
    print(
        "[finish=%s prompt_tokens=%s generated_tokens=%s ttft_ms=%.1f total_ms=%.1f tokens_per_s=%.1f worker=%s]"
        % (
            done.get("finish"),
            usage.get("prompt_tokens"),
            usage.get("generated_tokens"),
            timings.get("ttft_ms", 0),
            timings.get("total_ms", 0),
            timings.get("tokens_per_s", 0),
            done.get("worker"),
        ),
        file=sys.stderr,
    )


def stream_out(text):
    sys.stdout.write(text)
    sys.stdout.flush()


GENERATION_OPTIONS = [
    ("--model", str),
    ("--max-tokens", int),
    ("--temperature", float),
    ("--top-k", int),
    ("--top-p", float),
    ("--min-p", float),
    ("--repeat-penalty", float),
    ("--seed", int),
    ("--timeout-ms", int),
]


def add_options(parser, top_level):
    """The options every command takes. They may come before or after the
    command's name; after it, they are SUPPRESSed when absent so that they
    do not hide a value given before it."""
    default = None if top_level else argparse.SUPPRESS
    for flag, kind in GENERATION_OPTIONS:
        parser.add_argument(flag, type=kind, default=default)
    parser.add_argument("--stop", action="append", default=default, help="a stop string (repeatable)")
    parser.add_argument("--no-stream", action="store_true", default=default,
                        help="one done event with the whole text")


def main():
    parser = argparse.ArgumentParser(
        description="lmpool client (wire protocol version 1)",
        epilog="exit status: 0 ok, 2 usage, else by error code: "
        + ", ".join("%s %d" % kv for kv in EXIT_CODES.items()),
    )
    parser.add_argument("--endpoint", default=default_endpoint(), help="default: %(default)s")
    add_options(parser, True)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="continue a prompt")
    gen.add_argument("prompt_arg", nargs="?", metavar="PROMPT", help="default: --prompt, else stdin")
    gen.add_argument("--prompt")
    chat = sub.add_parser("chat", help="one chat exchange")
    chat.add_argument("--system")
    chat.add_argument("--message", action="append", help="user messages, in order (default: stdin)")
    for name in ("models", "stats", "health"):
        sub.add_parser(name, help="print the daemon's %s answer" % name)
    for p in sub.choices.values():
        add_options(p, False)
    args = parser.parse_args()
    if args.command in ("generate", "chat") and not args.model:
        parser.error("%s needs --model" % args.command)

    # Ctrl-C raises KeyboardInterrupt (which cancels the request) even when
    # started with SIGINT ignored, as background jobs of a script are.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    wait_ms = args.timeout_ms + 2000 if args.timeout_ms else 60000
    client = Client(args.endpoint, wait_ms)
    try:
        if args.command in ("models", "stats", "health"):
            answer = client.query(args.command)
            print(json.dumps(answer, indent=2, ensure_ascii=False))
            return 0 if args.command != "health" or answer.get("status") == "ok" else 1
        request = {"type": args.command, "model": args.model}
        request.update(sampling(args))
        if args.command == "generate":
            prompt = args.prompt if args.prompt is not None else args.prompt_arg
            if prompt is None:
                prompt = sys.stdin.read()
                if prompt.endswith("\n"):
                    prompt = prompt[:-1]
            request["prompt"] = prompt
        else:
            messages = [{"role": "system", "content": args.system}] if args.system else []
            for text in args.message or [sys.stdin.read().rstrip("\n")]:
                messages.append({"role": "user", "content": text})
            request["messages"] = messages
        streaming = request.get("stream", True)
        start = time.monotonic()
        done = client.generate(on_text=stream_out if streaming else None, **request)
        if not streaming:
            stream_out(done["text"])
        if sys.stdout.isatty():
            print()
        print_figures(done)
        print("[client wall time %.1f ms]" % ((time.monotonic() - start) * 1000), file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print("\nclient.py: cancelled", file=sys.stderr)
        return 130
    except LmpoolError as e:
        print("client.py: %s: %s" % (e.code, e.message), file=sys.stderr)
        return EXIT_CODES.get(e.code, EXIT_CODES["internal"])
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
