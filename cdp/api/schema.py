"""OpenAPI description of cdp's key authentication (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "cdp.api.authentication.ApiKeyAuthentication"
    name = ["secretKey", "writeKey"]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "A secret key (sk_…) for the read and admin APIs: `Authorization: Bearer sk_…`.",
            },
            {
                "type": "http",
                "scheme": "basic",
                "description": "A source's write key (wk_…) as the Basic username with an empty password, as "
                "Segment's libraries send it; `Authorization: Bearer wk_…` works too. Tracking endpoints only.",
            },
        ]


class WriteKeyInRequestScheme(OpenApiAuthenticationExtension):
    target_class = "profiles.api.tracking.WriteKeyInRequestAuthentication"
    name = "writeKeyInBody"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "query",
            "name": "writeKey",
            "description": "For beacons that cannot set a header: the write key as `?writeKey=` or as the JSON "
            "body's `writeKey` (tracking endpoints only).",
        }
