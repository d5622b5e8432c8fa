"""The local OpenID Connect provider of development: Keycloak from Maven Central, realm `orchard`."""
