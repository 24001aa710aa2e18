"""`tlab users add|list|remove`: accounts for password sign-in (TLAB_AUTH=password).

The password is read from the terminal (asked twice, not echoed) or, when stdin is not a terminal, from
its first line (for scripts: `printf '%s\\n' "$PW" | tlab users add alice`). It is never printed, logged
or put on the command line (where `ps` would show it); only its scrypt hash reaches the store.
"""

from __future__ import annotations

import sys

from engine import auth
from engine.errors import TlabError


def add_users_parser(sub) -> None:
    p = sub.add_parser("users", help="manage sign-in accounts for a shared deployment",
                       description="Accounts for TLAB_AUTH=password, kept in the store as salted hashes.")
    cmds = p.add_subparsers(dest="users_command", required=True)
    a = cmds.add_parser("add", help="add an account (asks for its password)")
    a.add_argument("name")
    a.add_argument("--admin", action="store_true", help="may cancel and re-run everyone's jobs")
    a.add_argument("--replace", action="store_true", help="set a new password (and admin flag) for an existing account")
    a.add_argument("--no-password", action="store_true",
                   help="no password: only lists an identity-provider (OIDC) user, e.g. as an administrator")
    cmds.add_parser("list", help="list the accounts (never their passwords)")
    r = cmds.add_parser("remove", help="remove an account (its jobs and results keep its name)")
    r.add_argument("name")
    p.set_defaults(func=run_users_cmd)


def read_password(stdin=None, ask=None) -> str:
    """The new password: asked twice on a terminal, else the first line of stdin."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        import getpass

        ask = ask or getpass.getpass
        first = ask("New password: ")
        if ask("Repeat it: ") != first:
            raise TlabError("The two passwords differ; run the command again.")
        return auth.check_password(first)
    line = stdin.readline()
    if not line:
        raise TlabError("No password given: type it when asked, or pipe it on stdin "
                        "(printf '%s\\n' \"$PW\" | tlab users add NAME).")
    return auth.check_password(line.rstrip("\r\n"))


def run_users_cmd(args) -> int:
    from engine.store import open_store

    if args.users_command == "add":
        auth.check_username(args.name)  # before asking for a password
    store = open_store()
    try:
        if args.users_command == "add":
            hashed = None if args.no_password else auth.hash_password(read_password())
            store.add_user(args.name, hashed, is_admin=args.admin, replace=args.replace)
            role = "administrator" if args.admin else "user"
            print(f"{'Updated' if args.replace else 'Added'} {role} {args.name} in {store.shown_url}.")
        elif args.users_command == "list":
            users = store.list_users()
            if not users:
                print("No accounts. Add one with: tlab users add NAME --admin")
            for u in users:
                flags = ["administrator" if u["is_admin"] else "user"]
                if not u["has_password"]:
                    flags.append("no password (identity provider)")
                print(f"{u['name']}\t{', '.join(flags)}\tsince {u['created_at']}")
        elif not store.remove_user(args.name):
            raise TlabError(f"There is no user {args.name}; `tlab users list` shows them.")
        else:
            print(f"Removed {args.name}.")
    finally:
        store.close()
    return 0
