"""The `fathom` command: serve, keys; the indexer commands come from indexers/cli.py."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from indexers.cli import add_commands
from service.analytics.command import add_command as add_analytics_command
from service.auth.keys import Keys
from service.auth.public import PUBLIC_RATE_LIMIT, parse_origins
from service.auth.scopes import DEFAULT_SCOPES, SCOPES, parse_collections, parse_scopes
from service.cli_options import (
    collection_names,
    config_option,
    non_negative_int,
    positive_int,
    scope_names,
)
from service.errors import FathomError, InvalidRequest, StoreLocked
from service.settings import ConfigError, Settings, load_settings
from service.stores import open_keys

Command = Callable[[argparse.Namespace, Settings], int]
# The tools of service/mcp_server.py, named here for `fathom mcp --help` without importing the MCP SDK
# (tests/unit/test_cli_help.py checks the two lists agree).
MCP_TOOLS = ("list_collections", "search", "get_document")


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.backends.qdrant_local import check_unlocked
    from service.backends.stack import qdrant_path

    host = args.host or settings.server.host
    port = args.port or settings.server.port
    if settings.search.enabled and not settings.qdrant.url:
        try:
            check_unlocked(qdrant_path(settings))
        except StoreLocked as exc:
            print(
                f"error: {exc}\nerror: is another `fathom serve`, `fathom index` or `fathom eval` running on"
                f" this data_dir ({settings.data_dir})? Stop it first: the embedded stores take one process"
                " at a time. To index while serving, push documents over HTTP"
                " (POST /v1/collections/{name}/documents).",
                file=sys.stderr,
            )
            return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 on its own;
    # which proxies to believe is [server] trusted_proxies' to say (service/auth/client_address.py).
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level="info", access_log=False, proxy_headers=False
    )
    return 0


def mcp(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from service.mcp_server import serve_stdio

    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve_stdio(settings))
    return 0


def migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the shared-state database's missing migrations ([state] url)."""
    if not settings.state.url:
        print("nothing to migrate: [state] url is empty, so state is SQLite under data_dir", file=sys.stderr)
        return 0
    from service.state.postgres import Postgres

    database = Postgres(settings.state.url)
    try:
        applied = database.migrate()
        version = database.version()
    finally:
        database.close()
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"state database at version {version} ({done})")
    return 0


@contextmanager
def key_store(settings: Settings) -> Iterator[Keys]:
    store = open_keys(settings)
    try:
        yield store
    finally:
        store.close()


def keys_create(args: argparse.Namespace, settings: Settings) -> int:
    scopes = parse_scopes(args.scope) if args.scope else DEFAULT_SCOPES
    collections = parse_collections(args.collections or [])
    origins = public_origins(args)
    with key_store(settings) as store:
        raw = store.create(
            args.name,
            quota=args.quota,
            rate_limit=args.rate_limit,
            scopes=scopes,
            collections=collections,
            origins=origins,
        )
        key = next(key for key in store.list() if key.name == args.name)
    quota = "unlimited" if args.quota is None else f"{args.quota} search units"
    rate = "unlimited" if key.rate_limit is None else f"{key.rate_limit} requests/minute"
    reach = "all collections" if collections is None else "collections " + ",".join(sorted(collections))
    kind = "secret key" if origins is None else f"public key for {', '.join(sorted(origins))}"
    print(
        f"created {kind} {args.name!r} (scopes: {','.join(sorted(scopes))}; {reach};"
        f" quota: {quota}; rate limit: {rate})."
    )
    if origins is None:
        print("Store it now: it is shown only once.")
    else:
        print("It may sit in your pages (data-key of /widget.js); it is shown only once.")
    print(raw)
    return 0


def public_origins(args: argparse.Namespace) -> frozenset[str] | None:
    """--public with its --origin values; FathomError when one comes without the other."""
    if args.public and not args.origin:
        raise InvalidRequest("--public needs at least one --origin the key may be used from")
    if args.origin and not args.public:
        raise InvalidRequest("--origin is for public keys: add --public")
    return parse_origins(args.origin) if args.public else None


def keys_list(args: argparse.Namespace, settings: Settings) -> int:
    with key_store(settings) as store:
        keys = store.list()
    print(
        f"{'NAME':<24} {'PREFIX':<10} {'USED':>8} {'QUOTA':>10} {'RATE/MIN':>9}  {'CREATED':<20}"
        f" {'STATUS':<8} SCOPES  COLLECTIONS"
    )
    for key in keys:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(key.created_at))
        quota = "-" if key.quota is None else str(key.quota)
        rate = "-" if key.rate_limit is None else str(key.rate_limit)
        status = "active" if key.active else "revoked"
        reach = "*" if key.collections is None else ",".join(sorted(key.collections))
        public = "" if key.origins is None else "  public from " + ",".join(sorted(key.origins))
        print(
            f"{key.name:<24} {key.key_prefix:<10} {key.used:>8} {quota:>10} {rate:>9}  {created:<20}"
            f" {status:<8} {','.join(sorted(key.scopes))}  {reach}{public}"
        )
    return 0


def keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with key_store(settings) as store:
        revoked = store.revoke(args.name)
    if not revoked:
        print(f"error: no active key named {args.name!r}; see `fathom keys list`", file=sys.stderr)
        return 1
    print(f"revoked key {args.name!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    config = config_option()
    parser = argparse.ArgumentParser(
        prog="fathom", description="Fathom: hybrid search and reranking.", parents=[config]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser("serve", help="run the HTTP service", parents=[config])
    serve_parser.add_argument("--host", help="interface to bind (default from [server] host)")
    serve_parser.add_argument("--port", type=positive_int, help="port to bind (default from [server] port)")
    serve_parser.set_defaults(handler=serve)

    tools = ", ".join(MCP_TOOLS)
    mcp_parser = commands.add_parser(
        "mcp",
        help=f"serve the MCP tools ({tools}) over stdio",
        description=f"Serve Fathom's MCP tools ({tools}) over stdin and stdout, for an assistant that"
        " starts it as its own process; the same tools are mounted on `fathom serve` at /mcp.",
        parents=[config],
    )
    mcp_parser.set_defaults(handler=mcp)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    create = keys.add_parser(
        "create", help="create a key; it is printed once, on the last line", parents=[config]
    )
    create.add_argument("--name", required=True)
    create.add_argument(
        "--quota", type=non_negative_int, help="search units the key may use (default: no limit)"
    )
    create.add_argument("--rate-limit", type=positive_int, help="requests per minute (default: no limit)")
    create.add_argument(
        "--scope",
        action="append",
        type=scope_names,
        help=f"what the key may do, repeated or comma-separated: {', '.join(SCOPES)}"
        " (default: search; admin holds every scope)",
    )
    create.add_argument(
        "--collections",
        action="append",
        type=collection_names,
        help="comma-separated collections the key is limited to (default: all)",
    )
    create.add_argument(
        "--public",
        action="store_true",
        help="a key for web pages: search only, on its --collections, from its --origin sites, rate-limited"
        f" ({PUBLIC_RATE_LIMIT} requests/minute unless --rate-limit)",
    )
    create.add_argument(
        "--origin",
        action="append",
        help="with --public: a site that may use the key, as https://example.org[:port]; repeat for more",
    )
    create.set_defaults(handler=keys_create)
    listing = keys.add_parser("list", help="list keys with usage", parents=[config])
    listing.set_defaults(handler=keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by name", parents=[config])
    revoke.add_argument("name")
    revoke.set_defaults(handler=keys_revoke)

    migrate_parser = commands.add_parser(
        "migrate",
        help="bring the shared state database ([state] url) to this release's schema",
        parents=[config],
    )
    migrate_parser.set_defaults(handler=migrate)

    add_analytics_command(commands, config)
    add_commands(commands, config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    handler: Command = args.handler
    try:
        return handler(args, settings)
    except Exception as exc:  # a CLI user gets one line, not a trace, for errors we can name
        if isinstance(exc, FathomError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
