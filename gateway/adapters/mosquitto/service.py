"""Broker identities over a device's life: what the API calls on register, assign,
return and retirement, and for operators and the gateway itself."""

from __future__ import annotations

import logging
import secrets

from gateway.adapters.mosquitto import dynsec
from gateway.adapters.mosquitto.client import AdminEndpoint, DynsecClient, IdentityTaken
from gateway.config.settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: 32 random bytes (256 bits) as URL-safe base64: 43 characters.
PASSWORD_BYTES = 32


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


class BrokerAccess:
    """Creates and removes identities in the broker. Passwords are generated here, handed
    back once to the caller and never kept: the broker stores only a salted hash."""

    def __init__(self, client: DynsecClient) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerAccess | None:
        """None when broker access management is off (the default)."""
        config = settings.broker_access
        if not config.enabled:
            return None
        url = config.admin_url or settings.mqtt_url
        if url is None or config.admin_password is None:
            raise SettingsError(
                "broker_access.enabled needs broker_access.admin_password and a broker "
                "(broker_access.admin_url or mqtt_url); the embedded broker has no dynsec"
            )
        endpoint = AdminEndpoint.from_url(
            url,
            config.admin_username,
            config.admin_password.get_secret_value(),
            ca_file=config.ca_file,
            cert_file=config.cert_file,
            key_file=config.key_file,
        )
        return cls(DynsecClient(endpoint, config.timeout_s))

    async def register_device(self, device_id: str) -> str:
        """A new identity for the device; returns its password (show it once)."""
        await self._refuse_service_identity(device_id)
        password = new_password()
        await self._client.execute(dynsec.provision_device(device_id, password))
        log.info("broker identity created", extra={"device_id": device_id})
        return password

    async def _refuse_service_identity(self, device_id: str) -> None:
        """A device id that names the gateway, the admin or an operator must never make us
        replace, disable or delete that identity."""
        [answer] = await self._client.execute([dynsec.get_client(device_id, missing_ok=True)])
        if dynsec.held_by_another_identity(device_id, answer):
            raise IdentityTaken(f"{device_id!r} is the name of another broker identity")

    async def suspend_device(self, device_id: str) -> None:
        await self._refuse_service_identity(device_id)
        await self._client.execute(dynsec.suspend_device(device_id))
        log.info("broker identity disabled", extra={"device_id": device_id})

    async def reinstate_device(self, device_id: str) -> None:
        await self._refuse_service_identity(device_id)
        await self._client.execute(dynsec.reinstate_device(device_id))
        log.info("broker identity enabled", extra={"device_id": device_id})

    async def remove_device(self, device_id: str) -> None:
        await self._refuse_service_identity(device_id)
        await self._client.execute(dynsec.remove_device(device_id))
        log.info("broker identity deleted", extra={"device_id": device_id})

    async def register_operator(self, tenant_id: str, username: str) -> str:
        password = new_password()
        await self._client.execute(dynsec.provision_operator(tenant_id, username, password))
        log.info("operator broker identity created", extra={"tenant_id": tenant_id})
        return password

    async def missing_gateway_acls(self) -> list[str]:
        """Topics of the ACLs bootstrap gives the gateway's role that the broker's role
        lacks (all of them when the role is missing): what ``doctor`` reports."""
        answer = (await self._client.execute([dynsec.get_role(dynsec.GATEWAY_ROLE)]))[0]
        role = (answer.get("data") or {}).get("role") or {}
        have = {(a.get("acltype"), a.get("topic")) for a in role.get("acls") or []}
        return sorted(
            f"{acl.acltype.value} {acl.topic}"
            for acl in dynsec.gateway_acls()
            if (acl.acltype.value, acl.topic) not in have
        )

    async def bootstrap(self, gateway_username: str, gateway_password: str) -> None:
        await self._client.execute(dynsec.bootstrap(gateway_username, gateway_password))
        log.info("broker access bootstrapped", extra={"gateway_username": gateway_username})
