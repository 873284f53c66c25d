"""`videoai recommend serve`: an HTTP JSON endpoint over a saved recommender, requests micro-batched on one model."""
from __future__ import annotations

import argparse
import socket

from videoai.cli.common import CLIError, add_device_flag, int_in_range, positive_int

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def add_parser(commands) -> None:
    """Add the `serve` action to the `recommend` ACTION subparsers."""
    serve = commands.add_parser(
        "serve", help="HTTP JSON endpoint: POST /recommend, GET /health (concurrent requests micro-batched)",
        description="Serve --model over HTTP. POST /recommend with {\"items\": [item id, ...], \"k\": 10} answers "
                    "{\"items\": [...], \"scores\": [...], \"unknown_items\": [...]}: items best first (history items "
                    "excluded), scores are log-probabilities, unknown history ids are skipped and listed. Bad requests "
                    "get a 4xx JSON {\"error\", \"field\"}. GET /health answers 200 once the model is loaded. "
                    "Concurrent requests are gathered into one beam search (up to --max-batch-size, waiting at most "
                    "--max-wait-ms after the first). Stop with Ctrl-C.")
    serve.add_argument("--model", required=True, metavar="DIR", help="folder written by `videoai recommend train`")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=port_number, default=8000, help="TCP port (default: 8000; 0: any free port)")
    serve.add_argument("--max-batch-size", type=positive_int, default=32,
                       help="most requests in one model call (default: 32; 1 serves them one at a time)")
    serve.add_argument("--max-wait-ms", type=non_negative_float, default=5.0,
                       help="longest wait for more requests after the first of a batch, in ms (default: 5)")
    serve.add_argument("--max-queue", type=positive_int, default=1024,
                       help="most requests waiting for a batch; more get 503 with Retry-After (default: 1024)")
    serve.add_argument("--timeout-ms", type=positive_float,
                       help="answer 504 to a request not answered within this many ms (default: no limit)")
    serve.add_argument("--num-beams", type=positive_int,
                       help="beam width (default: twice the largest k in the batch); a fixed width makes each answer "
                            "independent of the requests batched with it")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="warning",
                       help="server log level (default: warning; info also logs every request)")
    add_device_flag(serve)
    serve.set_defaults(run=run_serve_http)


port_number = int_in_range("a port number in [0, 65535]", 0, 65535)  # argparse type: a TCP port


def non_negative_float(text: str, positive: bool = False) -> float:
    """argparse type: a finite number >= 0 (> 0 with positive)."""
    bound = "> 0" if positive else ">= 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
    if not 0 <= value < float("inf") or (positive and value == 0):
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return non_negative_float(text, positive=True)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line CLIError (taken before the model loads, so a busy port fails
    fast; connections made while the model loads wait in the backlog)."""
    from videoai.recommend.serving import listening_socket

    try:
        return listening_socket(host, port)
    except socket.gaierror as error:
        raise CLIError(f"--host: cannot resolve {host!r} ({error.strerror})") from None
    except OSError as error:
        raise CLIError(f"--port: cannot listen on {host}:{port} ({error.strerror or error})") from None


def run_serve_http(args: argparse.Namespace) -> None:
    import uvicorn

    from videoai.cli.recommend import load_recommender  # here, not at the top: videoai.cli.recommend imports us
    from videoai.recommend.serving import create_app

    sock = listen(args.host, args.port)
    with sock:
        recommender = load_recommender(args.model, args.device)
        app = create_app(recommender, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                         max_queue=args.max_queue, timeout_ms=args.timeout_ms,
                         num_beams=args.num_beams)
        host, port = sock.getsockname()[:2]
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        print(f"serving {args.model} ({recommender.tokenizer.num_items} items, max batch {args.max_batch_size}, "
              f"max wait {args.max_wait_ms:g} ms) on {url}: POST /recommend, GET /health", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=5))
        server.run(sockets=[sock])
        if not server.started:
            raise CLIError("the server did not start (see the log above)")
