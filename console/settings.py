"""The console's settings, read from the environment; development defaults only with ORCHARD_ENV=dev."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from chassis.production import DEV, https_refusal, secret_refusals, secret_setting

CONSOLE_PORT = 8100
CONSOLE_CLIENT_ID = "orchard-console"
DEV_CONSOLE_CLIENT_SECRET = "orchard-console-dev-secret"
SERVICES = ("order", "voucher", "delivery", "wallet", "redemption", "support")
_DEFAULT_PORTS = dict(zip(SERVICES, range(8101, 8107), strict=True))


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    env: str = Field(default="production", alias="ORCHARD_ENV")
    http_host: str = Field(default="127.0.0.1", alias="ORCHARD_HTTP_HOST")
    http_port: int = Field(default=CONSOLE_PORT, alias="ORCHARD_HTTP_PORT")
    public_url: str = Field(default=f"http://127.0.0.1:{CONSOLE_PORT}", alias="ORCHARD_CONSOLE_URL")
    """Where people's browsers reach the console: the sign-in callback is under it."""
    oidc_issuer: str | None = Field(default=None, alias="ORCHARD_OIDC_ISSUER")
    client_id: str = Field(default=CONSOLE_CLIENT_ID, alias="ORCHARD_CONSOLE_CLIENT_ID")
    client_secret: SecretStr = secret_setting(DEV_CONSOLE_CLIENT_SECRET, "ORCHARD_CONSOLE_CLIENT_SECRET")
    session_idle_s: int = Field(default=3600, ge=60, alias="ORCHARD_CONSOLE_SESSION_IDLE_S")
    """A session unused this long is forgotten; the person signs in again."""
    order_url: str = Field(default=f"http://127.0.0.1:{_DEFAULT_PORTS['order']}", alias="ORCHARD_ORDER_URL")
    voucher_url: str = Field(
        default=f"http://127.0.0.1:{_DEFAULT_PORTS['voucher']}", alias="ORCHARD_VOUCHER_URL"
    )
    delivery_url: str = Field(
        default=f"http://127.0.0.1:{_DEFAULT_PORTS['delivery']}", alias="ORCHARD_DELIVERY_URL"
    )
    wallet_url: str = Field(
        default=f"http://127.0.0.1:{_DEFAULT_PORTS['wallet']}", alias="ORCHARD_WALLET_URL"
    )
    redemption_url: str = Field(
        default=f"http://127.0.0.1:{_DEFAULT_PORTS['redemption']}", alias="ORCHARD_REDEMPTION_URL"
    )
    support_url: str = Field(
        default=f"http://127.0.0.1:{_DEFAULT_PORTS['support']}", alias="ORCHARD_SUPPORT_URL"
    )
    api_timeout_s: float = Field(default=10.0, gt=0, alias="ORCHARD_CONSOLE_API_TIMEOUT_S")

    @property
    def is_dev(self) -> bool:
        return self.env.strip().lower() == DEV

    def service_url(self, service: str) -> str:
        if service not in SERVICES:
            raise KeyError(service)
        url: str = getattr(self, f"{service}_url")
        return url.rstrip("/")

    @property
    def callback_url(self) -> str:
        return self.public_url.rstrip("/") + "/auth/callback"

    def startup_refusals(self) -> list[str]:
        """Why the console must not start with these settings, one line per setting."""
        refusals = [] if self.oidc_issuer else ["ORCHARD_OIDC_ISSUER is not set: nobody could sign in"]
        if self.is_dev:
            return refusals
        refusals += secret_refusals(self)
        refusals += https_refusal("ORCHARD_CONSOLE_URL", self.public_url)
        if self.oidc_issuer:
            refusals += https_refusal("ORCHARD_OIDC_ISSUER", self.oidc_issuer)
        return refusals
