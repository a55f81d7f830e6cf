"""Make a CurveZMQ key pair for authenticated tcp:// transport.

    python -m pipeline.keys DIR NAME

writes DIR/NAME.key (the public key: give it to the other side; a server accepts the clients
whose NAME.key files are in its `curve.allowed_clients` folder) and DIR/NAME.key_secret (keep
it private: `curve.server_secret_key` or `curve.client_secret_key`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import zmq
import zmq.auth


def make_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """Create NAME.key and NAME.key_secret in `folder`; the secret file is readable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where to write the key files")
    parser.add_argument("name", help="key name, e.g. server or the client's host name")
    args = parser.parse_args(argv)
    if not zmq.has("curve"):
        print("pipeline.keys: this ZeroMQ build has no CURVE support", file=sys.stderr)
        return 1
    if not args.name or "/" in args.name or args.name.startswith("."):
        print(f"pipeline.keys: {args.name!r} is not a plain file name", file=sys.stderr)
        return 2
    secret_path = args.folder / f"{args.name}.key_secret"
    if secret_path.exists():
        print(f"pipeline.keys: {secret_path} exists; not overwriting a key", file=sys.stderr)
        return 1
    try:
        public, secret = make_key_pair(args.folder, args.name)
    except OSError as error:
        print(f"pipeline.keys: {args.folder}: cannot write ({error.strerror})", file=sys.stderr)
        return 1
    print(f"public key {public} (share it), secret key {secret} (keep it private)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
