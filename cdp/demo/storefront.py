"""The demo storefront: a small shop on its own origin (port PORT+1) that talks to cdp as a real shop
would, with Segment's Analytics.js 2.0 or RudderStack's SDK (served by cdp, only the host pointed at
it), the storefront kit's widgets and consent banner, a log-in that identifies the shopper, and a
"buy" that sends Order Completed. Its backend signs the user token the way docs/storefront.md shows.

    python -m cdp.demo.storefront --port 8001 --cdp http://127.0.0.1:8000

Run by ``make demo`` beside cdp's own processes; the banner prints its URL.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import os
import sys
import time
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

DEMO_SOURCE_NAME = "demo storefront"
SDKS = ("segment", "rudderstack")


def user_token(secret: str, user_id: str, ttl: int = 3600) -> str:
    """What a shop's backend does to let its page ask for a signed-in user's recommendations."""
    expires = int(time.time()) + ttl
    digest = hmac.new(secret.encode(), f"{user_id}.{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{digest}"


class DemoShop:
    def __init__(self, *, cdp: str, origin: str) -> None:
        self.cdp = cdp.rstrip("/")
        self.origin = origin
        self.write_key, self.token_secret = self._source()

    def _source(self) -> tuple[str, str]:
        """The demo's storefront source, allowing this shop's origin; a fresh write key each start
        (a write key is shown once, so the demo keeps the new one in memory)."""
        from profiles import services
        from profiles.models import Source

        origins = [self.origin, self.origin.replace("127.0.0.1", "localhost")]
        source = Source.objects.filter(name=DEMO_SOURCE_NAME).first()
        if source is None:
            source, raw = services.source_create(name=DEMO_SOURCE_NAME, allowed_origins=origins)
        else:
            services.source_set_allowed_origins(source=source, allowed_origins=origins)
            source, raw = services.source_rotate_write_key(source=source)
        return raw, source.user_token_secret

    # --- data ---------------------------------------------------------------------------------

    def products(self, limit: int = 12) -> list:
        from recommendations.models import Product

        return list(Product.objects.filter(in_stock=True).order_by("-price", "sku")[:limit])

    def product(self, sku: str):
        from recommendations.models import Product

        return Product.objects.filter(sku=sku).first()

    def user_id_for(self, email: str) -> str:
        """A demo customer logging in with the e-mail of a generated customer becomes that customer
        (so their history shapes the recommendations); anyone else gets a new user id."""
        from profiles.models import Identifier
        from profiles.normalize import normalize_identifier

        normalised = normalize_identifier("email", email)
        if normalised:
            owner = Identifier.objects.filter(kind="email", value=normalised).values_list("profile_id", flat=True)
            known = Identifier.objects.filter(kind="user_id", profile_id__in=owner).values_list("value", flat=True)
            if known.first():
                return known.first()
        return "web-" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:12]

    def sample_emails(self) -> list[str]:
        from profiles.models import Identifier

        with_user = Identifier.objects.filter(kind="user_id").values_list("profile_id", flat=True)
        rows = Identifier.objects.filter(kind="email", profile_id__in=with_user).order_by("value")
        return list(rows.values_list("value", flat=True)[:3])

    # --- pages --------------------------------------------------------------------------------

    def sdk_loader(self, sdk: str) -> str:
        cdp, key = json.dumps(self.cdp), json.dumps(self.write_key)
        if sdk == "rudderstack":
            return f"""<script src="{self.cdp}/static/storefront/vendor/rudderstack/index.js"></script>
<script>
window.rudderanalytics = new rudderanalytics.RudderAnalytics();
rudderanalytics.load({key}, {cdp}, {{configUrl: {cdp}, consentManagement: {{enabled: true, provider: "custom"}}}});
window.shopSdk = rudderanalytics;
</script>"""
        return f"""<script src="{self.cdp}/static/storefront/vendor/analytics-next/index.js"></script>
<script>
window.analytics = AnalyticsNext.AnalyticsBrowser.load({{writeKey: {key}, cdnURL: {cdp}}});
window.shopSdk = analytics;
</script>"""

    def layout(self, *, sdk: str, user: dict | None, title: str, body: str, script: str = "") -> str:
        user_attrs = ""
        if user:
            token = user_token(self.token_secret, user["id"])
            user_attrs = f'data-user-id="{html.escape(user["id"])}" data-user-token="{token}"'
            account = (
                f'Signed in as <b>{html.escape(user["email"])}</b> · <a href="/logout">log out</a> · '
                f'<a href="{self.cdp}/admin/profiles/profile/?q={quote(user["email"])}" target="_blank" '
                'id="admin-link">your profile in cdp admin</a>'
            )
        else:
            hint = ", ".join(self.sample_emails()) or "any e-mail"
            account = (
                '<form method="post" action="/login" id="login"><input name="email" type="email" required '
                f'placeholder="e-mail (try {html.escape(hint)})" size="40"> <button>Log in</button></form>'
            )
        other = "rudderstack" if sdk == "segment" else "segment"
        names = {"segment": "Segment Analytics.js 2.0", "rudderstack": "RudderStack JS SDK"}
        return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)} · Demo shop</title>
<style>
body{{font:16px/1.5 system-ui,sans-serif;margin:0;color:#222}} header{{background:#2f5d62;color:#fff;padding:12px 20px}}
header a{{color:#fff}} main{{padding:20px;max-width:1100px;margin:auto}} .grid{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #ddd;border-radius:8px;padding:12px;width:200px}} .card a{{color:inherit}}
.muted{{color:#666;font-size:.9em}} button{{padding:6px 12px}} section{{margin:24px 0}}
</style></head><body>
<header><b><a href="/">Demo shop</a></b> · on {html.escape(self.origin)}, sending to cdp at {html.escape(self.cdp)}
<div>{account}</div>
<div class="muted" style="color:#dde">SDK: {names[sdk]} · <a href="/sdk/{other}">switch to {names[other]}</a></div>
</header>
<main>{body}</main>
{self.sdk_loader(sdk)}
<script src="{self.cdp}/static/storefront/cdp-storefront.js" data-cdp-host="{self.cdp}"
  data-write-key="{self.write_key}" data-banner="true" data-product-url="/product/{{sku}}" {user_attrs}></script>
<script>shopSdk.page({json.dumps(title)});{script}</script>
</body></html>"""

    def home(self, *, sdk: str, user: dict | None, welcome: bool, bye: bool = False) -> str:
        cards = "".join(
            f'<div class="card"><a href="/product/{quote(p.sku)}"><b>{html.escape(p.title or p.sku)}</b></a>'
            f'<div class="muted">{html.escape(p.category)}</div><div>{p.price or ""}</div></div>'
            for p in self.products()
        )
        script = "shopSdk.reset();" if bye else ""
        if welcome and user:
            script = f"shopSdk.identify({json.dumps(user['id'])}, {{email: {json.dumps(user['email'])}}});"
        body = f"""<section><h2>Recommended for you</h2>
<div data-placement="home" data-k="4" id="recs-home"></div></section>
<section><h2>Our products</h2><div class="grid">{cards}</div></section>"""
        return self.layout(sdk=sdk, user=user, title="Home", body=body, script=script)

    def product_page(self, *, sdk: str, user: dict | None, sku: str, bought: bool) -> str | None:
        product = self.product(sku)
        if product is None:
            return None
        data = {
            "product_id": product.sku,
            "sku": product.sku,
            "name": product.title,
            "category": product.category,
            "price": float(product.price or 0),
        }
        thanks = '<p id="thanks"><b>Thank you for your order!</b></p>' if bought else ""
        body = f"""<h2>{html.escape(product.title or product.sku)}</h2>
<p class="muted">{html.escape(product.category)} · {html.escape(product.brand)}</p><p>{product.price or ""}</p>
<p>{html.escape(product.description[:400])}</p>
<form method="post" action="/buy/{quote(product.sku)}" id="buy-form"><button id="buy">Buy now</button></form>{thanks}
<section><h3>You may also like</h3>
<div data-placement="product" data-k="4" data-product="{html.escape(product.sku)}" id="recs-product"></div>
</section>"""
        script = f"shopSdk.track('Product Viewed', {json.dumps(data)});"
        if bought:
            order = {
                "order_id": f"demo-{int(time.time() * 1000)}",
                "revenue": data["price"],
                "currency": "EUR",
                "products": [{**data, "quantity": 1}],
            }
            script += f"shopSdk.track('Order Completed', {json.dumps(order)});"
        return self.layout(sdk=sdk, user=user, title=product.title or product.sku, body=body, script=script)


def make_handler(shop: DemoShop | None = None):
    class Handler(BaseHTTPRequestHandler):
        demo: DemoShop | None = shop

        def handle_one_request(self):
            try:
                super().handle_one_request()
            finally:  # each request thread gives its database connection back (the pool is small)
                from django.db import connections

                connections.close_all()

        def _state(self) -> tuple[str, dict | None]:
            jar = cookies.SimpleCookie(self.headers.get("Cookie", ""))
            sdk = jar["sdk"].value if "sdk" in jar and jar["sdk"].value in SDKS else "segment"
            user = None
            if "user" in jar:
                try:
                    user = json.loads(bytes.fromhex(jar["user"].value).decode())
                except ValueError:
                    user = None
            return sdk, user

        def _send(self, status: int, body: str = "", headers: dict | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _redirect(self, to: str, cookie: str | None = None) -> None:
            headers = {"Location": to}
            if cookie:
                headers["Set-Cookie"] = cookie
            self._send(303, "", headers)

        def do_GET(self):  # http.server's naming
            sdk, user = self._state()
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            path = parts.path
            if path == "/":
                self._send(200, self.demo.home(sdk=sdk, user=user, welcome="welcome" in query, bye="bye" in query))
            elif path.startswith("/product/"):
                page = self.demo.product_page(sdk=sdk, user=user, sku=unquote(path[9:]), bought="bought" in query)
                self._send(200, page) if page else self._send(404, "<h1>No such product</h1>")
            elif path.startswith("/sdk/") and path[5:] in SDKS:
                self._redirect("/", f"sdk={path[5:]}; Path=/; SameSite=Lax")
            elif path == "/logout":
                # the next page resets the SDK's identity, so the next visitor is anonymous again
                self._redirect("/?bye=1", "user=; Path=/; Max-Age=0")
            else:
                self._send(404, "<h1>Not found</h1>")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            path = urlsplit(self.path).path
            if path == "/login":
                email = (form.get("email") or [""])[0].strip()
                if "@" not in email:
                    self._redirect("/")
                    return
                user = {"id": self.demo.user_id_for(email), "email": email}
                value = json.dumps(user).encode().hex()
                self._redirect("/?welcome=1", f"user={value}; Path=/; SameSite=Lax")
            elif path.startswith("/buy/"):
                self._redirect(f"/product/{path[5:]}?bought=1")
            else:
                self._send(404, "<h1>Not found</h1>")

        def log_message(self, format, *args):
            sys.stderr.write("storefront: " + (format % args) + "\n")

    return Handler


def serve(*, port: int, cdp: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The demo shop's server (not yet serving); port 0 picks a free one (tests)."""
    handler = make_handler()
    server = ThreadingHTTPServer((host, port), handler)
    handler.demo = DemoShop(cdp=cdp, origin=f"http://{host}:{server.server_address[1]}")
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("STOREFRONT_PORT", "8001")))
    parser.add_argument("--cdp", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
    import django

    django.setup()
    server = serve(port=args.port, cdp=args.cdp)
    print(f"storefront: demo shop on http://127.0.0.1:{args.port}/ sending to {args.cdp}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
