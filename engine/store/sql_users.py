"""The users half of SqlStore: accounts for password sign-in and the administrator flag.

Only hashes are stored (engine.auth.hash_password); nothing here ever sees or returns a password.
"""

import sqlalchemy as sa

from engine.auth import check_username
from engine.errors import TlabError
from engine.store import records as rec
from engine.store.schema import users


class SqlUsersMixin:
    def add_user(self, name: str, password_hash: str | None, is_admin: bool = False,
                 replace: bool = False) -> None:
        """Create the account `name` (or, with replace, set its hash and admin flag)."""
        check_username(name)
        if password_hash is not None and not str(password_hash).startswith("scrypt$"):
            raise TlabError("add_user takes a hash from engine.auth.hash_password, never a password.")
        with self._tx(write=True) as conn:
            exists = conn.execute(sa.select(users.c.name).where(users.c.name == name)).first() is not None
            if exists and not replace:
                raise TlabError(f"The user {name} already exists. To set a new password, run "
                                f"`tlab users add {name} --replace`; to remove it, `tlab users remove {name}`.")
            values = {"password_hash": password_hash, "is_admin": bool(is_admin)}
            if exists:
                conn.execute(sa.update(users).where(users.c.name == name).values(**values))
            else:
                conn.execute(sa.insert(users).values(name=name, created_at=rec.now(), **values))

    def get_user(self, name: str) -> dict | None:
        """{"name", "password_hash", "is_admin", "created_at"} or None."""
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(users).where(users.c.name == name)).mappings().first()
        if row is None:
            return None
        return {**row, "is_admin": bool(row["is_admin"]), "created_at": rec.to_iso(row["created_at"])}

    def list_users(self) -> list[dict]:
        """Accounts without their hashes: [{"name", "is_admin", "has_password", "created_at"}]."""
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(users).order_by(users.c.name)).mappings().all()
        return [{"name": r["name"], "is_admin": bool(r["is_admin"]), "has_password": r["password_hash"] is not None,
                 "created_at": rec.to_iso(r["created_at"])} for r in rows]

    def remove_user(self, name: str) -> bool:
        """Remove the account (its jobs and results keep its name as their owner)."""
        with self._tx(write=True) as conn:
            return conn.execute(sa.delete(users).where(users.c.name == name)).rowcount > 0
