"""The console's tables (migration ``0004_console``); nothing else touches them.

Every method is one unit of work for its tenant, behind row-level security. The three
lookups that name no tenant (an address at sign-in, an invitation, a session) go
through the migration's ``SECURITY DEFINER`` functions, which return the tenant only.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tessera_common.postgres import Database, UnitOfWork
from tessera_common.tenant_access import address_allowed


class ConsoleStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def unit(self, tenant_id: str | None) -> UnitOfWork:
        return UnitOfWork(self.database, tenant_id)

    async def _tenant_of(self, function: str, wanted: str) -> str | None:
        async with self.unit(None) as uow:
            return await uow.connection.fetchval(f"SELECT {function}($1)", wanted)

    async def tenant_of_email(self, email: str) -> str | None:
        return await self._tenant_of("console_tenant_of_email", email)

    async def tenant_of_invitation(self, invitation_id: str) -> str | None:
        return await self._tenant_of("console_tenant_of_invitation", invitation_id)

    async def tenant_of_session(self, session_id: str) -> str | None:
        return await self._tenant_of("console_tenant_of_session", session_id)

    async def email_taken(self, email: str) -> bool:
        async with self.unit(None) as uow:
            return await uow.connection.fetchval("SELECT console_email_taken($1)", email)

    async def tenant_name(self, tenant_id: str) -> str | None:
        async with self.unit(tenant_id) as uow:
            return await uow.connection.fetchval("SELECT name FROM tenants WHERE tenant_id = $1", tenant_id)

    # --- invitations -------------------------------------------------------

    async def add_invitation(self, invitation: dict[str, Any], activity: dict[str, Any] | None = None) -> None:
        async with self.unit(invitation["tenant_id"]) as uow:
            await uow.connection.execute(
                "INSERT INTO console_invitations (tenant_id, invitation_id, token_sha256, email, role, invited_by,"
                " created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                invitation["tenant_id"], invitation["invitation_id"], invitation["token_sha256"], invitation["email"],
                invitation["role"], invitation.get("invited_by"), invitation["created_at"], invitation["expires_at"])
            if activity:
                await _log(uow, invitation["tenant_id"], activity)

    async def invitation(self, tenant_id: str, invitation_id: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT * FROM console_invitations WHERE tenant_id = $1 AND invitation_id = $2",
                tenant_id, invitation_id)
        return dict(row) if row else None

    async def set_invitation_pending(self, tenant_id: str, invitation_id: str, password_hash: str,
                                     totp_sealed: bytes, display_name: str) -> None:
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "UPDATE console_invitations SET pending_password_hash = $3, pending_totp_sealed = $4,"
                " pending_display_name = $5 WHERE tenant_id = $1 AND invitation_id = $2 AND used_at IS NULL",
                tenant_id, invitation_id, password_hash, totp_sealed, display_name)

    async def accept_invitation(self, invitation: dict[str, Any], account: dict[str, Any], recovery_hashes: list[str],
                                session: dict[str, Any], activity: dict[str, Any]) -> bool:
        """The account, its recovery codes and its first session, in one transaction; False
        if the invitation was used meanwhile (or the address got an account)."""
        tenant_id = invitation["tenant_id"]
        async with self.unit(tenant_id) as uow:
            claimed = await uow.connection.execute(
                "UPDATE console_invitations SET used_at = $3, pending_password_hash = NULL, pending_totp_sealed = NULL,"
                " pending_display_name = NULL"
                " WHERE tenant_id = $1 AND invitation_id = $2 AND used_at IS NULL",
                tenant_id, invitation["invitation_id"], session["created_at"])
            if claimed != "UPDATE 1" or await uow.connection.fetchval("SELECT console_email_taken($1)",
                                                                       account["email"]):
                return False
            await uow.connection.execute(
                "INSERT INTO console_accounts (tenant_id, account_id, email, display_name, role, password_hash,"
                " totp_sealed, totp_last_step, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                tenant_id, account["account_id"], account["email"], account["display_name"], account["role"],
                account["password_hash"], account["totp_sealed"], account["totp_last_step"], account["created_at"])
            await uow.connection.executemany(
                "INSERT INTO console_recovery_codes (tenant_id, account_id, code_sha256) VALUES ($1, $2, $3)",
                [(tenant_id, account["account_id"], h) for h in recovery_hashes])
            await _insert_session(uow, session)
            await _log(uow, tenant_id, activity)
        return True

    # --- accounts ------------------------------------------------------------

    async def account_by_email(self, tenant_id: str, email: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT * FROM console_accounts WHERE tenant_id = $1 AND lower(email) = lower($2)", tenant_id, email)
        return dict(row) if row else None

    async def account(self, tenant_id: str, account_id: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT * FROM console_accounts WHERE tenant_id = $1 AND account_id = $2", tenant_id, account_id)
        return dict(row) if row else None

    async def accounts(self, tenant_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT a.account_id, a.email, a.display_name, a.role, a.created_at, a.totp_sealed IS NOT NULL AS"
                " has_totp, (SELECT count(*) FROM console_recovery_codes r WHERE r.tenant_id = a.tenant_id AND"
                " r.account_id = a.account_id AND r.used_at IS NULL) AS recovery_codes_left"
                " FROM console_accounts a WHERE a.tenant_id = $1 ORDER BY a.created_at, a.account_id", tenant_id)
            invitations = await uow.connection.fetch(
                "SELECT invitation_id, email, role, created_at, expires_at FROM console_invitations"
                " WHERE tenant_id = $1 AND used_at IS NULL ORDER BY created_at", tenant_id)
        return [dict(r) for r in rows], [dict(r) for r in invitations]

    async def take_totp_step(self, tenant_id: str, account_id: str, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) was used already."""
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE console_accounts SET totp_last_step = $3"
                " WHERE tenant_id = $1 AND account_id = $2 AND totp_last_step < $3", tenant_id, account_id, step)
        return status == "UPDATE 1"

    async def use_recovery_code(self, tenant_id: str, account_id: str, code_sha256: str, at: datetime) -> bool:
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE console_recovery_codes SET used_at = $4 WHERE tenant_id = $1 AND account_id = $2"
                " AND code_sha256 = $3 AND used_at IS NULL", tenant_id, account_id, code_sha256, at)
        return status == "UPDATE 1"

    async def reset_factors(self, tenant_id: str, account_id: str, at: datetime, activity: dict[str, Any]) -> bool:
        """The account's TOTP and recovery codes go, and every session of it ends: at its
        next sign-in it sets up a new TOTP before anything else."""
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE console_accounts SET totp_sealed = NULL, totp_last_step = 0"
                " WHERE tenant_id = $1 AND account_id = $2", tenant_id, account_id)
            if status != "UPDATE 1":
                return False
            await uow.connection.execute(
                "DELETE FROM console_recovery_codes WHERE tenant_id = $1 AND account_id = $2", tenant_id, account_id)
            await uow.connection.execute(
                "UPDATE console_sessions SET ended_at = $3 WHERE tenant_id = $1 AND account_id = $2"
                " AND ended_at IS NULL", tenant_id, account_id, at)
            await _log(uow, tenant_id, activity)
        return True

    async def set_up_totp(self, tenant_id: str, account_id: str, totp_sealed: bytes, step: int,
                          recovery_hashes: list[str], session_id: str, at: datetime, activity: dict[str, Any]) -> None:
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "UPDATE console_accounts SET totp_sealed = $3, totp_last_step = $4"
                " WHERE tenant_id = $1 AND account_id = $2", tenant_id, account_id, totp_sealed, step)
            await uow.connection.execute(
                "DELETE FROM console_recovery_codes WHERE tenant_id = $1 AND account_id = $2", tenant_id, account_id)
            await uow.connection.executemany(
                "INSERT INTO console_recovery_codes (tenant_id, account_id, code_sha256) VALUES ($1, $2, $3)",
                [(tenant_id, account_id, h) for h in recovery_hashes])
            await uow.connection.execute(
                "UPDATE console_sessions SET factor_at = $3, last_seen_at = $3, pending_totp_sealed = NULL"
                " WHERE tenant_id = $1 AND session_id = $2", tenant_id, session_id, at)
            await _log(uow, tenant_id, activity)

    # --- sessions --------------------------------------------------------------

    async def add_session(self, session: dict[str, Any]) -> None:
        async with self.unit(session["tenant_id"]) as uow:
            await _insert_session(uow, session)

    async def session(self, tenant_id: str, session_id: str) -> dict[str, Any] | None:
        async with self.unit(tenant_id) as uow:
            row = await uow.connection.fetchrow(
                "SELECT s.*, a.role, a.email, a.display_name, a.totp_sealed IS NOT NULL AS has_totp"
                " FROM console_sessions s JOIN console_accounts a USING (tenant_id, account_id)"
                " WHERE s.tenant_id = $1 AND s.session_id = $2", tenant_id, session_id)
        return dict(row) if row else None

    async def update_session(self, tenant_id: str, session_id: str, **columns: Any) -> None:
        allowed = {"last_seen_at", "factor_at", "ended_at", "pending_totp_sealed", "webauthn_challenge"}
        assert set(columns) <= allowed, columns
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=3))
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                f"UPDATE console_sessions SET {assignments} WHERE tenant_id = $1 AND session_id = $2",
                tenant_id, session_id, *columns.values())

    async def end_sessions(self, tenant_id: str, account_id: str, at: datetime) -> int:
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE console_sessions SET ended_at = $3 WHERE tenant_id = $1 AND account_id = $2"
                " AND ended_at IS NULL", tenant_id, account_id, at)
        return int(status.split()[-1])

    # --- passkeys ------------------------------------------------------------------

    async def passkeys(self, tenant_id: str, account_id: str) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT credential_id, public_key, sign_count, name, created_at, last_used_at FROM console_passkeys"
                " WHERE tenant_id = $1 AND account_id = $2 ORDER BY created_at", tenant_id, account_id)
        return [dict(r) for r in rows]

    async def add_passkey(self, tenant_id: str, account_id: str, passkey: dict[str, Any],
                          activity: dict[str, Any]) -> None:
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute(
                "INSERT INTO console_passkeys (tenant_id, account_id, credential_id, public_key, sign_count, name,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                tenant_id, account_id, passkey["credential_id"], passkey["public_key"], passkey["sign_count"],
                passkey["name"], passkey["created_at"])
            await _log(uow, tenant_id, activity)

    async def remove_passkey(self, tenant_id: str, account_id: str, credential_id: bytes,
                             activity: dict[str, Any]) -> bool:
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "DELETE FROM console_passkeys WHERE tenant_id = $1 AND account_id = $2 AND credential_id = $3",
                tenant_id, account_id, credential_id)
            if status != "DELETE 1":
                return False
            await _log(uow, tenant_id, activity)
        return True

    async def passkey_used(self, tenant_id: str, account_id: str, credential_id: bytes, sign_count: int,
                           at: datetime) -> bool:
        """Record the counter the authenticator showed; False if it went backwards (a
        cloned authenticator), unless it never counts (0 and 0)."""
        async with self.unit(tenant_id) as uow:
            status = await uow.connection.execute(
                "UPDATE console_passkeys SET sign_count = $4, last_used_at = $5 WHERE tenant_id = $1"
                " AND account_id = $2 AND credential_id = $3 AND (sign_count < $4 OR (sign_count = 0 AND $4 = 0))",
                tenant_id, account_id, credential_id, sign_count, at)
        return status == "UPDATE 1"

    async def set_challenge(self, tenant_id: str, session_id: str, challenge: bytes | None) -> None:
        await self.update_session(tenant_id, session_id, webauthn_challenge=challenge)

    async def take_challenge(self, tenant_id: str, session_id: str) -> bytes | None:
        """The session's pending WebAuthn challenge, cleared: each is answered once."""
        async with self.unit(tenant_id) as uow:
            return await uow.connection.fetchval(
                "UPDATE console_sessions s SET webauthn_challenge = NULL FROM (SELECT webauthn_challenge AS old"
                " FROM console_sessions WHERE tenant_id = $1 AND session_id = $2 FOR UPDATE) o"
                " WHERE s.tenant_id = $1 AND s.session_id = $2 RETURNING o.old", tenant_id, session_id)

    # --- the IP allow-list -------------------------------------------------------

    async def allow_list(self, tenant_id: str) -> list[str]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT network::text AS range FROM console_allow_list WHERE tenant_id = $1 ORDER BY network", tenant_id)
        return [r["range"] for r in rows]

    async def set_allow_list(self, tenant_id: str, networks: list[str], at: datetime,
                             activity: dict[str, Any]) -> None:
        async with self.unit(tenant_id) as uow:
            await uow.connection.execute("DELETE FROM console_allow_list WHERE tenant_id = $1", tenant_id)
            await uow.connection.executemany(
                "INSERT INTO console_allow_list (tenant_id, network, added_at) VALUES ($1, $2::cidr, $3)",
                [(tenant_id, n, at) for n in networks])
            await _log(uow, tenant_id, activity)
            # The services behind the gateway apply the same list to the tenant's keys.
            from tessera_enrolment.api_keys import publish_access  # api_keys imports this module

            await publish_access(uow, tenant_id)

    async def network_allowed(self, tenant_id: str, address: str | None) -> bool:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT network FROM console_allow_list WHERE tenant_id = $1", tenant_id)
        return address_allowed([r["network"] for r in rows], address)

    # --- activity ----------------------------------------------------------------

    async def log(self, tenant_id: str, activity: dict[str, Any]) -> None:
        async with self.unit(tenant_id) as uow:
            await _log(uow, tenant_id, activity)

    async def activity(self, tenant_id: str, limit: int, before: int | None = None) -> list[dict[str, Any]]:
        async with self.unit(tenant_id) as uow:
            rows = await uow.connection.fetch(
                "SELECT c.seq, c.at, c.account_id, a.email, c.action, c.detail, c.network FROM console_activity c"
                " LEFT JOIN console_accounts a USING (tenant_id, account_id)"
                " WHERE c.tenant_id = $1 AND ($2::bigint IS NULL OR c.seq < $2) ORDER BY c.seq DESC LIMIT $3",
                tenant_id, before, limit)
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


async def _insert_session(uow: UnitOfWork, session: dict[str, Any]) -> None:
    await uow.connection.execute(
        "INSERT INTO console_sessions (tenant_id, session_id, account_id, token_sha256, created_at, last_seen_at,"
        " factor_at, pending_totp_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        session["tenant_id"], session["session_id"], session["account_id"], session["token_sha256"],
        session["created_at"], session["created_at"], session.get("factor_at"), session.get("pending_totp_sealed"))


async def _log(uow: UnitOfWork, tenant_id: str, activity: dict[str, Any]) -> None:
    await uow.connection.execute(
        "INSERT INTO console_activity (tenant_id, at, account_id, action, detail, network)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
        tenant_id, activity["at"], activity.get("account_id"), activity["action"],
        json.dumps(activity.get("detail") or {}), activity.get("network"))
