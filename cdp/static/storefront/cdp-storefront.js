/*
 * cdp storefront kit: recommendation widgets and a consent banner for a shop page that already uses
 * Segment's Analytics.js 2.0 or RudderStack's JavaScript SDK. No build step, no dependencies.
 *
 *   <script src="https://CDP/static/storefront/cdp-storefront.js" data-cdp-host="https://CDP"
 *           data-write-key="wk_…" data-banner="true" defer></script>
 *   <div data-placement="home" data-k="4"></div>
 *
 * Placement attributes: data-k, data-title, data-product (product page: its sku), data-cart-items and
 * data-order-items (comma-separated skus), data-session-items (skus on screen).
 * Optional attributes on the script: data-user-id + data-user-token (the token your backend signs,
 * see docs/storefront.md), data-purposes="analytics,personalisation,marketing", data-policy-version,
 * data-product-url="/product/{sku}". Or call window.cdpStorefront.init({...}) yourself.
 *
 * Widgets report "Recommendation Viewed" (when shown) and "Product Clicked" (on click), each with
 * properties.recommendation_id, through whichever SDK the page uses: window.analytics (Segment) or
 * window.rudderanalytics (RudderStack), or the instance given as init({analytics}).
 */
(function () {
  "use strict";

  var STORAGE_KEY = "cdp_consent";
  var PURPOSE_NAMES = {
    analytics: "Analytics",
    personalisation: "Personalised recommendations",
    marketing: "Marketing",
    third_party_sharing: "Sharing with partners",
  };
  var config = null;
  var readyCallbacks = [];

  // --- the page's SDK -----------------------------------------------------------------------------

  function sdk() {
    if (config && config.analytics) return config.analytics;
    var ra = window.rudderanalytics;
    if (ra && typeof ra.track === "function") return ra;
    var a = window.analytics;
    if (a && typeof a.track === "function") return a;
    return null;
  }

  function isRudderStack(instance) {
    return !!instance && typeof instance.getAnonymousId === "function";
  }

  function sdkReady(instance) {
    // both SDKs have ready(callback); wait for it at most 5 s (a blocked SDK must not block the page)
    return new Promise(function (resolve) {
      var timer = setTimeout(resolve, 5000);
      if (typeof instance.ready !== "function") return resolve();
      instance.ready(function () {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  function visitor() {
    // {anonymousId, userId} from the SDK (Segment's user() may be a promise on the npm wrapper)
    var instance = sdk();
    if (!instance) return Promise.resolve({ anonymousId: null, userId: config.userId || null });
    if (isRudderStack(instance)) {
      return sdkReady(instance).then(function () {
        return {
          anonymousId: instance.getAnonymousId() || null,
          userId: config.userId || instance.getUserId() || null,
        };
      });
    }
    return sdkReady(instance).then(function () {
      return typeof instance.user === "function" ? instance.user() : null;
    }).then(function (user) {
      return {
        anonymousId: user ? user.anonymousId() : null,
        userId: config.userId || (user ? user.id() : null) || null,
      };
    });
  }

  function track(name, properties) {
    var instance = sdk();
    if (instance) return instance.track(name, properties);
    if (window.console) console.warn("cdp storefront: no analytics SDK on the page; not reported:", name);
  }

  // --- recommendations ----------------------------------------------------------------------------

  function query(params) {
    return Object.keys(params)
      .filter(function (k) {
        return params[k] !== null && params[k] !== undefined && params[k] !== "";
      })
      .map(function (k) {
        return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]);
      })
      .join("&");
  }

  function fetchRecommendations(placement, options) {
    return visitor().then(function (who) {
      var params = {
        writeKey: config.writeKey,
        placement: placement,
        k: options.k || 4,
        session_items: options.sessionItems || "",
        product: options.product || "",
        cart_items: options.cartItems || "",
        order_items: options.orderItems || "",
      };
      if (who.userId && config.userToken) {
        params.user_id = who.userId;
        params.user_token = config.userToken;
      } else {
        params.anonymous_id = who.anonymousId;
      }
      return fetch(config.host + "/v1/recommendations?" + query(params)).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error((body.error && body.error.message) || "HTTP " + response.status);
          return body;
        });
      });
    });
  }

  function productUrl(item) {
    if (item.url) return item.url;
    return (config.productUrl || "#{sku}").replace("{sku}", encodeURIComponent(item.sku));
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render(container, answer) {
    var placement = answer.placement;
    container.textContent = "";
    container.setAttribute("data-recommendation-id", answer.recommendation_id);
    var title = container.getAttribute("data-title");
    if (title) container.appendChild(el("h3", "cdp-recs-title", title));
    var list = el("ul", "cdp-recs");
    answer.items.forEach(function (item, index) {
      var li = el("li", "cdp-rec");
      li.setAttribute("data-sku", item.sku);
      var link = el("a", "cdp-rec-link");
      link.href = productUrl(item);
      if (item.image) {
        var img = el("img", "cdp-rec-image");
        img.src = item.image;
        img.alt = "";
        link.appendChild(img);
      }
      link.appendChild(el("span", "cdp-rec-name", item.title || item.sku));
      if (item.price) link.appendChild(el("span", "cdp-rec-price", item.price));
      if (item.explanation) link.appendChild(el("span", "cdp-rec-why", item.explanation));
      link.addEventListener("click", function (event) {
        var result = track("Product Clicked", {
          recommendation_id: answer.recommendation_id,
          placement: placement,
          product_id: item.sku,
          sku: item.sku,
          name: item.title,
          category: item.category,
          price: item.price ? Number(item.price) : undefined,
          position: index + 1,
        });
        var href = link.getAttribute("href");
        if (!href || href.charAt(0) === "#" || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) {
          return;
        }
        event.preventDefault(); // report first, then go (at most 300 ms later)
        var gone = false;
        var go = function () {
          if (!gone) {
            gone = true;
            window.location.href = link.href;
          }
        };
        setTimeout(go, 300);
        Promise.resolve(result).then(go, go);
      });
      li.appendChild(link);
      list.appendChild(li);
    });
    container.appendChild(list);
    var viewed = false;
    function reportViewed() {
      if (viewed) return;
      viewed = true;
      track("Recommendation Viewed", {
        recommendation_id: answer.recommendation_id,
        placement: placement,
        personalised: answer.personalised,
        products: answer.items.map(function (item, index) {
          return { product_id: item.sku, position: index + 1 };
        }),
      });
    }
    if ("IntersectionObserver" in window) {
      var observer = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) {
          observer.disconnect();
          reportViewed();
        }
      });
      observer.observe(container);
    } else {
      reportViewed();
    }
  }

  function renderPlacements(root) {
    var nodes = (root || document).querySelectorAll("[data-placement]");
    return Promise.all(
      Array.prototype.map.call(nodes, function (node) {
        node.setAttribute("data-state", "loading");
        return fetchRecommendations(node.getAttribute("data-placement"), {
          k: node.getAttribute("data-k"),
          sessionItems: node.getAttribute("data-session-items"),
          product: node.getAttribute("data-product"),
          cartItems: node.getAttribute("data-cart-items"),
          orderItems: node.getAttribute("data-order-items"),
        }).then(
          function (answer) {
            render(node, answer);
            node.setAttribute("data-state", "ready");
          },
          function (error) {
            node.setAttribute("data-state", "error");
            node.setAttribute("data-error", String(error.message || error));
          }
        );
      })
    );
  }

  // --- consent ------------------------------------------------------------------------------------

  function storedConsent() {
    try {
      return JSON.parse(window.localStorage.getItem(STORAGE_KEY) || "null");
    } catch (e) {
      return null;
    }
  }

  function applyConsentToSdk(purposes) {
    // Segment: context.consent.categoryPreferences on every event (as Segment's consent wrapper does);
    // RudderStack: its consent API (context.consentManagement). cdp reads both.
    var instance = sdk();
    if (!instance) return;
    if (isRudderStack(instance)) {
      var allowed = [], denied = [];
      Object.keys(purposes).forEach(function (key) {
        (purposes[key] ? allowed : denied).push(key);
      });
      if (typeof instance.consent === "function") {
        instance.consent({ consentManagement: { enabled: true, provider: "custom", allowedConsentIds: allowed, deniedConsentIds: denied } });
      }
      return;
    }
    window.__cdpConsentPreferences = purposes;
    if (!window.__cdpConsentMiddleware && typeof instance.addSourceMiddleware === "function") {
      window.__cdpConsentMiddleware = true;
      instance.addSourceMiddleware(function (ctx) {
        var prefs = window.__cdpConsentPreferences;
        if (prefs) {
          var obj = ctx.payload.obj;
          obj.context = obj.context || {};
          obj.context.consent = Object.assign({}, obj.context.consent, { categoryPreferences: prefs });
        }
        ctx.next(ctx.payload);
      });
    }
  }

  function recordConsent(purposes) {
    return visitor().then(function (who) {
      var body = { purposes: purposes, bannerId: "cdp-storefront-kit" };
      if (who.anonymousId) body.anonymousId = who.anonymousId;
      if (who.userId) body.userId = who.userId;
      if (config.policyVersion) body.policyVersion = config.policyVersion;
      return fetch(config.host + "/v1/consent", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Basic " + btoa(config.writeKey + ":") },
        body: JSON.stringify(body),
      }).then(function (response) {
        return response.json().then(function (answer) {
          if (!response.ok) throw new Error((answer.error && answer.error.message) || "HTTP " + response.status);
          return answer;
        });
      });
    });
  }

  function answerConsent(purposes) {
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify({ purposes: purposes, at: new Date().toISOString() }));
    } catch (e) { /* private mode: the banner will ask again next time */ }
    applyConsentToSdk(purposes);
    return recordConsent(purposes);
  }

  function showBanner() {
    var purposes = config.purposes;
    var banner = el("div", "cdp-consent-banner");
    banner.id = "cdp-consent-banner";
    banner.setAttribute("role", "dialog");
    banner.setAttribute("aria-label", "Privacy choices");
    banner.appendChild(el("p", "cdp-consent-text", config.bannerText ||
      "We use your data to measure our shop, personalise what you see and, if you agree, for marketing. Your choice:"));
    var boxes = {};
    var choices = el("div", "cdp-consent-choices");
    purposes.forEach(function (key) {
      var label = el("label", "cdp-consent-choice");
      var box = el("input");
      box.type = "checkbox";
      box.name = key;
      box.id = "cdp-consent-" + key;
      box.checked = key === "analytics";
      boxes[key] = box;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + (PURPOSE_NAMES[key] || key)));
      choices.appendChild(label);
    });
    banner.appendChild(choices);
    function done(values) {
      banner.setAttribute("data-state", "saving");
      answerConsent(values).then(
        function () { banner.remove(); },
        function (error) {
          banner.setAttribute("data-state", "error");
          banner.setAttribute("data-error", String(error.message || error));
        }
      );
    }
    function all(value) {
      var out = {};
      purposes.forEach(function (key) { out[key] = value; });
      return out;
    }
    var buttons = el("div", "cdp-consent-buttons");
    [
      ["cdp-consent-accept", "Accept all", function () { done(all(true)); }],
      ["cdp-consent-reject", "Reject all", function () { done(all(false)); }],
      ["cdp-consent-save", "Save my choices", function () {
        var out = {};
        purposes.forEach(function (key) { out[key] = boxes[key].checked; });
        done(out);
      }],
    ].forEach(function (spec) {
      var button = el("button", "cdp-consent-button", spec[1]);
      button.type = "button";
      button.id = spec[0];
      button.addEventListener("click", spec[2]);
      buttons.appendChild(button);
    });
    banner.appendChild(buttons);
    document.body.appendChild(banner);
    return banner;
  }

  function injectStyle() {
    if (document.getElementById("cdp-storefront-style")) return;
    var style = el("style");
    style.id = "cdp-storefront-style";
    style.textContent =
      ".cdp-recs{list-style:none;display:flex;flex-wrap:wrap;gap:12px;padding:0;margin:0}" +
      ".cdp-rec{flex:1 1 150px;max-width:220px;border:1px solid #ddd;border-radius:8px;padding:10px}" +
      ".cdp-rec-link{display:flex;flex-direction:column;gap:4px;color:inherit;text-decoration:none}" +
      ".cdp-rec-image{width:100%;border-radius:4px}.cdp-rec-name{font-weight:600}" +
      ".cdp-rec-why{font-size:.8em;color:#666}" +
      ".cdp-consent-banner{position:fixed;left:0;right:0;bottom:0;z-index:2147483000;background:#fff;" +
      "border-top:2px solid #2f5d62;padding:16px;box-shadow:0 -2px 12px rgba(0,0,0,.15);font:15px/1.4 system-ui,sans-serif}" +
      ".cdp-consent-choices{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}" +
      ".cdp-consent-buttons{display:flex;flex-wrap:wrap;gap:8px}" +
      ".cdp-consent-button{padding:8px 14px;border-radius:6px;border:1px solid #2f5d62;background:#fff;cursor:pointer}" +
      "#cdp-consent-accept{background:#2f5d62;color:#fff}";
    document.head.appendChild(style);
  }

  // --- start --------------------------------------------------------------------------------------

  function init(options) {
    config = Object.assign(
      {
        host: "",
        writeKey: "",
        userId: null,
        userToken: null,
        banner: false,
        purposes: ["analytics", "personalisation", "marketing"],
        policyVersion: null,
        productUrl: null,
        analytics: null,
        placements: true,
      },
      options || {}
    );
    config.host = String(config.host || "").replace(/\/+$/, "");
    if (!config.host || !config.writeKey) throw new Error("cdp storefront: host and writeKey are required");
    injectStyle();
    var stored = storedConsent();
    if (stored && stored.purposes) applyConsentToSdk(stored.purposes);
    var banner = config.banner && !stored ? showBanner() : null;
    var rendered = config.placements ? renderPlacements() : Promise.resolve();
    rendered.then(function () {
      readyCallbacks.splice(0).forEach(function (cb) { cb(); });
    });
    return { banner: banner, rendered: rendered };
  }

  function fromScriptTag() {
    var script = document.currentScript;
    if (!script || !script.getAttribute("data-write-key")) return;
    var options = {
      host: script.getAttribute("data-cdp-host") || new URL(script.src).origin,
      writeKey: script.getAttribute("data-write-key"),
      userId: script.getAttribute("data-user-id"),
      userToken: script.getAttribute("data-user-token"),
      banner: script.getAttribute("data-banner") === "true",
      policyVersion: script.getAttribute("data-policy-version"),
      productUrl: script.getAttribute("data-product-url"),
    };
    var purposes = script.getAttribute("data-purposes");
    if (purposes) options.purposes = purposes.split(",").map(function (p) { return p.trim(); }).filter(Boolean);
    var start = function () { init(options); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
  }

  window.cdpStorefront = {
    init: init,
    renderPlacements: renderPlacements,
    showBanner: function () { return showBanner(); },
    answerConsent: answerConsent,
    consent: storedConsent,
    ready: function (callback) { readyCallbacks.push(callback); },
    version: "1",
  };
  fromScriptTag();
})();
