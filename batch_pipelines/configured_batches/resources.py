"""The config service resource: where preference batches read user preferences.

| env var                | field             | embedded default                    |
|------------------------|-------------------|-------------------------------------|
| CONFIG_SERVICE_URL     | base_url          | "" = the store's user_preferences   |
| CONFIG_SERVICE_API_KEY | api_key           | none                                |
| CONFIG_CACHE_TTL       | cache_ttl_seconds | 300                                 |

Resource key ``config_service``. The store is passed in by the caller (its own resource),
so both preference sensors and the preference batch read the same config database.
"""

import os

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from batch_pipelines.clients.config_service import ConfigServiceClient
from batch_pipelines.configured_batches.preferences import (
    DEFAULT_CACHE_TTL_SECONDS,
    ConfigDatabaseClient,
)
from batch_pipelines.resources import env_or


class ConfigServiceResource(dg.ConfigurableResource):
    """The config database: the store by default, the config service when a URL is set."""

    base_url: str = ""
    api_key: str | None = Field(default=None, repr=False)
    cache_ttl_seconds: int = int(DEFAULT_CACHE_TTL_SECONDS)
    timeout_seconds: float = 10.0

    @property
    def uses_service(self) -> bool:
        return bool(self.base_url)

    def service_client(self) -> ConfigServiceClient:
        return ConfigServiceClient(
            self.base_url, self.api_key, timeout_seconds=self.timeout_seconds
        )

    def config_database(self, engine: sa.Engine) -> ConfigDatabaseClient:
        """A ConfigDatabaseClient over the service when configured, else over ``engine``."""
        if self.uses_service:
            return ConfigDatabaseClient.from_service(
                self.service_client(), ttl_seconds=self.cache_ttl_seconds
            )
        return ConfigDatabaseClient.from_store(engine, ttl_seconds=self.cache_ttl_seconds)


def config_service_resource() -> ConfigServiceResource:
    """The resource as the code location configures it, from the environment."""
    ttl = (
        dg.EnvVar.int("CONFIG_CACHE_TTL")
        if os.environ.get("CONFIG_CACHE_TTL")
        else int(DEFAULT_CACHE_TTL_SECONDS)
    )
    return ConfigServiceResource(
        base_url=env_or("CONFIG_SERVICE_URL", ""),
        api_key=env_or("CONFIG_SERVICE_API_KEY"),
        cache_ttl_seconds=ttl,
    )
